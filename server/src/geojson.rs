//! `GeoJSON` output, identical for the HTTP server and the CLI.
//!
//! Written straight from the engine's features with `Serialize` rather than
//! through a `serde_json::Value` tree: building the tree (a map per feature,
//! a clone of every string) was a tenth of a reverse request's CPU.

use std::fmt;

use cairn::{Feature, Point, Prop};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;

pub const ATTRIBUTION: &str = "BAN";
pub const LICENCE: &str = "ETALAB-2.0";

struct PropValue<'a>(&'a Prop);

impl Serialize for PropValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Prop::Str(v) => s.serialize_str(v),
            Prop::Int(i) => s.serialize_i64(*i),
            Prop::Num(n) if n.is_finite() => s.serialize_f64(*n),
            Prop::Num(_) => s.serialize_unit(),
            Prop::Bool(b) => s.serialize_bool(*b),
        }
    }
}

/// A JSON object of `pairs` in their order, each value through `value`.
/// Later duplicates replace earlier ones, as a JSON object would.
fn last_wins<'a, S: Serializer, V, T: Serialize>(
    s: S,
    pairs: &'a [(String, V)],
    value: impl Fn(&'a V) -> T,
) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(None)?;
    for (i, (k, v)) in pairs.iter().enumerate() {
        if !pairs[i + 1..].iter().any(|(later, _)| later == k) {
            m.serialize_entry(k, &value(v))?;
        }
    }
    m.end()
}

struct Properties<'a>(&'a [(String, Prop)]);

impl Serialize for Properties<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        last_wins(s, self.0, PropValue)
    }
}

struct Geometry(Point);

impl Serialize for Geometry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("type", "Point")?;
        m.serialize_entry("coordinates", &[self.0.lon, self.0.lat])?;
        m.end()
    }
}

/// One feature, as GET /get/{id} answers it and as the items of a collection.
pub struct FeatureJson<'a>(pub &'a Feature);

impl Serialize for FeatureJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("type", "Feature")?;
        m.serialize_entry("geometry", &Geometry(self.0.point))?;
        m.serialize_entry("properties", &Properties(&self.0.properties))?;
        m.end()
    }
}

impl fmt::Display for FeatureJson<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        display(self, f)
    }
}

pub fn feature(f: &Feature) -> FeatureJson<'_> {
    FeatureJson(f)
}

/// What the response echoes of the request.
#[derive(Default)]
pub struct Echo<'a> {
    pub query: Option<&'a str>,
    pub filters: &'a [(String, Vec<String>)],
    pub center: Option<Point>,
    pub limit: usize,
}

pub struct Collection<'a> {
    features: &'a [Feature],
    echo: &'a Echo<'a>,
}

struct Features<'a>(&'a [Feature]);

impl Serialize for Features<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for f in self.0 {
            seq.serialize_element(&FeatureJson(f))?;
        }
        seq.end()
    }
}

struct Filters<'a>(&'a [(String, Vec<String>)]);

impl Serialize for Filters<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        last_wins(s, self.0, |v| v)
    }
}

impl Serialize for Collection<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.echo;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", "FeatureCollection")?;
        m.serialize_entry("version", "draft")?;
        m.serialize_entry("features", &Features(self.features))?;
        m.serialize_entry("attribution", ATTRIBUTION)?;
        m.serialize_entry("licence", LICENCE)?;
        if let Some(q) = e.query {
            m.serialize_entry("query", q)?;
        }
        if !e.filters.is_empty() {
            m.serialize_entry("filters", &Filters(e.filters))?;
        }
        if let Some(c) = e.center {
            m.serialize_entry("center", &[c.lon, c.lat])?;
        }
        m.serialize_entry("limit", &e.limit)?;
        m.end()
    }
}

impl fmt::Display for Collection<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        display(self, f)
    }
}

fn display<T: Serialize>(v: &T, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let bytes = serde_json::to_vec(v).map_err(|_| fmt::Error)?;
    // serde_json writes UTF-8 only.
    f.write_str(std::str::from_utf8(&bytes).map_err(|_| fmt::Error)?)
}

pub fn collection<'a>(features: &'a [Feature], echo: &'a Echo<'a>) -> Collection<'a> {
    Collection { features, echo }
}

/// The bytes of a collection.
pub fn collection_bytes(features: &[Feature], echo: &Echo<'_>) -> Vec<u8> {
    // Serializing plain strings, numbers and maps with string keys cannot fail.
    serde_json::to_vec(&collection(features, echo)).unwrap_or_default()
}

/// Results as a short table for a person at a terminal: rank, score, type,
/// label, id, and the distance when a point was given. Columns are padded
/// to their widest cell, counted in characters (labels have accents).
pub fn table(features: &[Feature]) -> String {
    if features.is_empty() {
        return "no results\n".to_owned();
    }
    let text = |p: Option<&Prop>| match p {
        Some(Prop::Str(s)) => s.clone(),
        Some(Prop::Int(i)) => i.to_string(),
        Some(Prop::Num(n)) if n.is_finite() => n.to_string(),
        Some(Prop::Bool(b)) => b.to_string(),
        _ => String::new(),
    };
    let with_distance = features.iter().any(|f| f.prop("distance").is_some());
    let mut rows = vec![["#", "score", "type", "label", "id", "distance"].map(str::to_owned).to_vec()];
    for (i, f) in features.iter().enumerate() {
        let distance = match f.prop("distance") {
            Some(Prop::Int(m)) => format!("{m} m"),
            other => text(other),
        };
        rows.push(vec![
            (i + 1).to_string(),
            format!("{:.3}", f.score),
            text(f.prop("type")),
            text(f.prop("label")),
            text(f.prop("id")),
            distance,
        ]);
    }
    let columns = if with_distance { 6 } else { 5 };
    let widths: Vec<usize> =
        (0..columns).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for c in 0..columns {
            let cell = &row[c];
            let pad = widths[c] - cell.chars().count();
            // Numbers to the right, words to the left.
            if matches!(c, 0 | 1 | 5) {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            }
            line.push_str("  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// The bytes are those of the Value-tree encoding this replaced (same
    /// keys, same order, same number formatting).
    #[test]
    fn same_json_as_a_value_tree() {
        let f = Feature {
            point: Point { lat: 45.75, lon: 4.85 },
            score: 0.5,
            properties: vec![
                ("label".into(), Prop::Str("8 Rue \"de\" la Paix\u{1}".into())),
                ("score".into(), Prop::Num(0.123_456_789)),
                ("housenumber".into(), Prop::Int(8)),
                ("distance".into(), Prop::Num(f64::NAN)),
                ("x".into(), Prop::Num(1e21)),
            ],
        };
        let filters = vec![("type".to_owned(), vec!["street".to_owned(), "x".to_owned()])];
        let echo =
            Echo { query: Some("8 rue"), filters: &filters, center: Some(Point { lat: 1.5, lon: -2.0 }), limit: 5 };
        let got: String = collection(std::slice::from_ref(&f), &echo).to_string();
        let props: serde_json::Map<String, Value> = f
            .properties
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Prop::Str(s) => Value::String(s.clone()),
                    Prop::Int(i) => Value::from(*i),
                    Prop::Num(n) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
                    Prop::Bool(b) => Value::Bool(*b),
                };
                (k.clone(), v)
            })
            .collect();
        let want = json!({
            "type": "FeatureCollection", "version": "draft",
            "features": [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [4.85, 45.75]}, "properties": props}],
            "attribution": "BAN", "licence": "ETALAB-2.0", "query": "8 rue",
            "filters": {"type": ["street", "x"]}, "center": [-2.0, 1.5], "limit": 5,
        });
        assert_eq!(got, want.to_string());
        assert_eq!(feature(&f).to_string(), want["features"][0].to_string());
    }
}
