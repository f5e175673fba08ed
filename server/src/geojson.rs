//! GeoJSON output, identical for the HTTP server and the CLI.

use cairn::{Feature, Point, Prop};
use serde_json::{json, Map, Value};

pub const ATTRIBUTION: &str = "BAN";
pub const LICENCE: &str = "ETALAB-2.0";

fn prop(p: &Prop) -> Value {
    match p {
        Prop::Str(s) => Value::String(s.clone()),
        Prop::Int(i) => Value::from(*i),
        Prop::Num(n) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
    }
}

pub fn feature(f: &Feature) -> Value {
    let props: Map<String, Value> = f.properties.iter().map(|(k, v)| (k.clone(), prop(v))).collect();
    json!({
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [f.point.lon, f.point.lat]},
        "properties": props,
    })
}

/// What the response echoes of the request.
#[derive(Default)]
pub struct Echo<'a> {
    pub query: Option<&'a str>,
    pub filters: &'a [(String, Vec<String>)],
    pub center: Option<Point>,
    pub limit: usize,
}

pub fn collection(features: &[Feature], echo: &Echo<'_>) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), "FeatureCollection".into());
    m.insert("version".into(), "draft".into());
    m.insert("features".into(), Value::Array(features.iter().map(feature).collect()));
    m.insert("attribution".into(), ATTRIBUTION.into());
    m.insert("licence".into(), LICENCE.into());
    if let Some(q) = echo.query {
        m.insert("query".into(), q.into());
    }
    if !echo.filters.is_empty() {
        let f: Map<String, Value> = echo.filters.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        m.insert("filters".into(), Value::Object(f));
    }
    if let Some(c) = echo.center {
        m.insert("center".into(), json!([c.lon, c.lat]));
    }
    m.insert("limit".into(), echo.limit.into());
    Value::Object(m)
}
