//! Checking a record against its schema, and the typed values the indexes
//! keep of it.

use serde_json::{Map, Value as Json};

use super::schema::{FieldType, Schema};
use crate::text::analysis::fold;

/// The value of one field, as indexed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Typed {
    /// Normalised as the field says (lowercase, folded).
    Keywords(Vec<String>),
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Milliseconds since 1970-01-01T00:00:00Z.
    Date(i64),
    Geo {
        lat: f64,
        lon: f64,
    },
}

/// Why a value does not fit its field; the caller adds where it is.
pub(crate) type Mismatch = String;

/// Normalises a keyword as its field compares them.
pub(crate) fn normalise_keyword(s: &str, lowercase: bool, folded: bool) -> String {
    if folded {
        // `fold` turns punctuation into spaces, which a keyword keeps.
        s.split_whitespace().map(fold).collect::<Vec<_>>().join(" ").trim().to_owned()
    } else if lowercase {
        s.to_lowercase()
    } else {
        s.to_owned()
    }
}

fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Parses an instant: RFC 3339 text, or epoch seconds as a number.
pub(crate) fn parse_date(v: &Json) -> Result<i64, Mismatch> {
    match v {
        Json::String(s) => parse_date_str(s),
        Json::Number(n) => {
            let secs = n.as_f64().filter(|f| f.is_finite() && f.abs() < 1e13).ok_or("epoch seconds out of range")?;
            #[allow(clippy::cast_possible_truncation)] // bounded above
            Ok((secs * 1000.0).round() as i64)
        }
        other => Err(format!("expected a date (RFC 3339 text or epoch seconds), found {}", json_kind(other))),
    }
}

pub(crate) fn parse_date_str(s: &str) -> Result<i64, Mismatch> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<i64>() {
        return secs.checked_mul(1000).ok_or_else(|| format!("{s:?}: epoch seconds out of range"));
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{s:?} is not an RFC 3339 date ({e}), such as 2026-12-06T10:00:00Z"))?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| format!("{s:?}: out of range"))
}

fn parse_geo(v: &Json) -> Result<(f64, f64), Mismatch> {
    let (lat, lon) = match v {
        Json::Object(o) => (
            o.get("lat").and_then(Json::as_f64).ok_or("a point needs a number \"lat\"")?,
            o.get("lon").and_then(Json::as_f64).ok_or("a point needs a number \"lon\"")?,
        ),
        Json::Array(a) if a.len() == 2 => {
            let lon = a[0].as_f64().ok_or("[lon, lat]: lon is not a number")?;
            (a[1].as_f64().ok_or("[lon, lat]: lat is not a number")?, lon)
        }
        Json::String(s) => {
            let (a, b) = s.split_once(',').ok_or("a point as text is \"lat,lon\"")?;
            let lat = a.trim().parse().map_err(|_| format!("{a:?} is not a latitude"))?;
            (lat, b.trim().parse().map_err(|_| format!("{b:?} is not a longitude"))?)
        }
        other => {
            return Err(format!(
                "expected a point ({{\"lat\":..,\"lon\":..}}, \"lat,lon\" or [lon, lat]), found {}",
                json_kind(other)
            ))
        }
    };
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err(format!("({lat}, {lon}) is not a point on Earth: latitude in [-90, 90], longitude in [-180, 180]"));
    }
    Ok((lat, lon))
}

/// The typed value of `v` for a field of type `kind`; `Ok(None)` for JSON
/// fields, which are not indexed.
pub(crate) fn typed(spec: &super::FieldSpec, v: &Json) -> Result<Option<Typed>, Mismatch> {
    let kw = |s: &str| normalise_keyword(s, spec.lowercase, spec.fold);
    Ok(Some(match spec.kind {
        FieldType::Keyword => match v {
            Json::String(s) => Typed::Keywords(vec![kw(s)]),
            Json::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Json::String(s) => out.push(kw(s)),
                        other => return Err(format!("[{i}]: expected a string, found {}", json_kind(other))),
                    }
                }
                out.sort_unstable();
                out.dedup();
                Typed::Keywords(out)
            }
            other => return Err(format!("expected a string or an array of strings, found {}", json_kind(other))),
        },
        FieldType::Text => match v {
            Json::String(s) => Typed::Text(s.clone()),
            other => return Err(format!("expected text, found {}", json_kind(other))),
        },
        FieldType::Integer => match v {
            Json::Number(n) => Typed::Int(n.as_i64().ok_or_else(|| format!("{n} is not a 64-bit integer"))?),
            other => return Err(format!("expected an integer, found {}", json_kind(other))),
        },
        FieldType::Float => match v.as_f64() {
            Some(f) if f.is_finite() => Typed::Float(f),
            _ => return Err(format!("expected a number, found {}", json_kind(v))),
        },
        FieldType::Bool => match v {
            Json::Bool(b) => Typed::Bool(*b),
            other => return Err(format!("expected true or false, found {}", json_kind(other))),
        },
        FieldType::Date => Typed::Date(parse_date(v)?),
        FieldType::GeoPoint => {
            let (lat, lon) = parse_geo(v)?;
            Typed::Geo { lat, lon }
        }
        FieldType::Json => return Ok(None),
    }))
}

/// A record that does not fit its schema: the field (a JSON path) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub path: String,
    pub reason: String,
}

/// Checks a record; returns its id. Unknown fields are refused (declare a
/// `json` field to keep free-form data).
pub(crate) fn check(schema: &Schema, record: &Map<String, Json>) -> Result<String, Invalid> {
    for (name, v) in record {
        let Some(spec) = schema.spec(name) else {
            return Err(Invalid { path: name.clone(), reason: "no such field in the schema".into() });
        };
        if v.is_null() {
            continue;
        }
        typed(spec, v).map_err(|reason| Invalid { path: name.clone(), reason })?;
    }
    for (name, spec) in &schema.fields {
        if spec.required && record.get(name).is_none_or(Json::is_null) {
            return Err(Invalid { path: name.clone(), reason: "missing, and the schema requires it".into() });
        }
    }
    let key = &schema.primary_key;
    match record.get(key) {
        Some(Json::String(s)) if !s.is_empty() && s.len() <= 512 => Ok(s.clone()),
        Some(Json::Number(n)) if n.is_i64() => Ok(n.to_string()),
        Some(Json::String(_)) => Err(Invalid { path: key.clone(), reason: "an id is 1 to 512 bytes".into() }),
        _ => Err(Invalid { path: key.clone(), reason: "missing: it is the primary key".into() }),
    }
}

/// The value of a CSV cell for a field: numbers, booleans and points are
/// read from their text; an empty cell is no value.
pub(crate) fn from_cell(kind: FieldType, cell: &str) -> Result<Json, Mismatch> {
    if cell.is_empty() {
        return Ok(Json::Null);
    }
    Ok(match kind {
        FieldType::Keyword | FieldType::Text | FieldType::Date | FieldType::GeoPoint => Json::String(cell.to_owned()),
        FieldType::Integer => {
            Json::from(cell.trim().parse::<i64>().map_err(|_| format!("{cell:?} is not an integer"))?)
        }
        FieldType::Float => {
            let f: f64 = cell.trim().parse().map_err(|_| format!("{cell:?} is not a number"))?;
            serde_json::Number::from_f64(f).map(Json::Number).ok_or_else(|| format!("{cell:?} is not finite"))?
        }
        FieldType::Bool => match cell.trim() {
            "true" | "1" => Json::Bool(true),
            "false" | "0" => Json::Bool(false),
            _ => return Err(format!("{cell:?} is not true or false")),
        },
        FieldType::Json => serde_json::from_str(cell).map_err(|e| format!("not JSON: {e}"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_from_text_and_numbers_agree() {
        let a = parse_date(&Json::from("2026-12-06T10:00:00+01:00")).unwrap();
        let b = parse_date(&Json::from("2026-12-06T09:00:00Z")).unwrap();
        let c = parse_date(&serde_json::json!(1_796_547_600)).unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert!(parse_date(&Json::from("06/12/2026")).unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn points_in_three_forms() {
        let want = Some(Typed::Geo { lat: 45.5, lon: 4.25 });
        let spec = super::super::FieldSpec::new(FieldType::GeoPoint);
        assert_eq!(typed(&spec, &serde_json::json!({"lat": 45.5, "lon": 4.25})).unwrap(), want);
        assert_eq!(typed(&spec, &serde_json::json!([4.25, 45.5])).unwrap(), want);
        assert_eq!(typed(&spec, &serde_json::json!("45.5, 4.25")).unwrap(), want);
        assert!(typed(&spec, &serde_json::json!({"lat": 95, "lon": 0})).is_err());
    }
}
