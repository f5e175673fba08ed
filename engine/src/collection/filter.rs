//! The filter tree of a query: parsed from JSON with the path of every
//! mistake, then compiled against a version's indexes into a test per row.
//!
//! ```json
//! {"and": [
//!   {"term": {"status": "verified"}},
//!   {"range": {"created_at": {"gte": "2026-01-01T00:00:00Z", "lt": "2026-02-01T00:00:00Z"}}},
//!   {"not": {"exists": "deleted_at"}},
//!   {"bbox": {"position": {"west": 170, "south": -50, "east": -170, "north": -30}}},
//!   {"radius": {"position": {"lat": 45.76, "lon": 4.83, "meters": 500}}}
//! ]}
//! ```

use std::ops::Bound;

use serde_json::{Map, Value as Json};

use super::index::{Column, Index};
use super::schema::{FieldType, Schema};
use super::value::{normalise_keyword, parse_date};
use super::CollectionError;
use crate::geo::haversine_m;
use crate::record::Point;

/// A parsed filter, checked against the schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    All,
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    /// Any of the values (`term` is one).
    Terms {
        field: String,
        values: Vec<Json>,
    },
    Range {
        field: String,
        lower: Bound<Json>,
        upper: Bound<Json>,
    },
    Prefix {
        field: String,
        prefix: String,
    },
    Exists {
        field: String,
    },
    BBox {
        field: String,
        west: f64,
        south: f64,
        east: f64,
        north: f64,
    },
    Radius {
        field: String,
        lat: f64,
        lon: f64,
        meters: f64,
    },
}

fn bad(path: &str, reason: impl Into<String>) -> CollectionError {
    CollectionError::BadQuery { path: path.to_owned(), reason: reason.into() }
}

/// `{"field": value}`: the one field and its value.
fn single<'a>(v: &'a Json, path: &str) -> Result<(&'a String, &'a Json), CollectionError> {
    let o = v.as_object().ok_or_else(|| bad(path, "expected an object {\"field\": ...}"))?;
    let mut it = o.iter();
    match (it.next(), it.next()) {
        (Some(one), None) => Ok(one),
        _ => Err(bad(path, format!("expected one field, found {}", o.len()))),
    }
}

fn number(o: &Map<String, Json>, key: &str, path: &str) -> Result<f64, CollectionError> {
    o.get(key)
        .and_then(Json::as_f64)
        .filter(|f| f.is_finite())
        .ok_or_else(|| bad(&format!("{path}.{key}"), "expected a number"))
}

fn kind_of(schema: &Schema, field: &str, path: &str) -> Result<FieldType, CollectionError> {
    schema.spec(field).map(|s| s.kind).ok_or_else(|| bad(path, format!("no field {field:?} in the schema")))
}

/// Depth of nesting accepted: a filter is written by people and programs,
/// not grown without end; the bound keeps recursion off the stack's edge.
const MAX_DEPTH: usize = 32;

impl Filter {
    /// Parses `v`, whose place in the request is `path` (for errors).
    pub fn parse(v: &Json, schema: &Schema, path: &str) -> Result<Filter, CollectionError> {
        Filter::parse_at(v, schema, path, 0)
    }

    // One arm per operator of the filter language.
    #[allow(clippy::too_many_lines)]
    fn parse_at(v: &Json, schema: &Schema, path: &str, depth: usize) -> Result<Filter, CollectionError> {
        if depth > MAX_DEPTH {
            return Err(bad(path, format!("nested deeper than {MAX_DEPTH}")));
        }
        let (op, arg) = single(v, path)?;
        let here = format!("{path}.{op}");
        let list = |arg: &Json| -> Result<Vec<Filter>, CollectionError> {
            let items = arg.as_array().ok_or_else(|| bad(&here, "expected an array of filters"))?;
            items
                .iter()
                .enumerate()
                .map(|(i, f)| Filter::parse_at(f, schema, &format!("{here}[{i}]"), depth + 1))
                .collect()
        };
        Ok(match op.as_str() {
            "and" => Filter::And(list(arg)?),
            "or" => Filter::Or(list(arg)?),
            "not" => Filter::Not(Box::new(Filter::parse_at(arg, schema, &here, depth + 1)?)),
            "term" | "terms" => {
                let (field, value) = single(arg, &here)?;
                let fpath = format!("{here}.{field}");
                let kind = kind_of(schema, field, &fpath)?;
                if matches!(kind, FieldType::Text | FieldType::Json | FieldType::GeoPoint) {
                    return Err(bad(
                        &fpath,
                        format!("{op} is for keyword, integer, float, bool and date fields; {field:?} is {kind:?}"),
                    ));
                }
                let values = if op == "terms" {
                    value.as_array().ok_or_else(|| bad(&fpath, "expected an array of values"))?.clone()
                } else {
                    vec![value.clone()]
                };
                for (i, v) in values.iter().enumerate() {
                    let vpath = if op == "terms" { format!("{fpath}[{i}]") } else { fpath.clone() };
                    check_value(kind, v, &vpath)?;
                }
                Filter::Terms { field: field.clone(), values }
            }
            "range" => {
                let (field, bounds) = single(arg, &here)?;
                let fpath = format!("{here}.{field}");
                let kind = kind_of(schema, field, &fpath)?;
                if !matches!(kind, FieldType::Integer | FieldType::Float | FieldType::Date) {
                    return Err(bad(
                        &fpath,
                        format!("range is for integer, float and date fields; {field:?} is {kind:?}"),
                    ));
                }
                let o = bounds
                    .as_object()
                    .ok_or_else(|| bad(&fpath, "expected {\"gte\"|\"gt\": .., \"lte\"|\"lt\": ..}"))?;
                let (mut lower, mut upper) = (Bound::Unbounded, Bound::Unbounded);
                for (k, v) in o {
                    let bpath = format!("{fpath}.{k}");
                    check_value(kind, v, &bpath)?;
                    let (slot, b) = match k.as_str() {
                        "gte" => (&mut lower, Bound::Included(v.clone())),
                        "gt" => (&mut lower, Bound::Excluded(v.clone())),
                        "lte" => (&mut upper, Bound::Included(v.clone())),
                        "lt" => (&mut upper, Bound::Excluded(v.clone())),
                        _ => return Err(bad(&bpath, "a bound is gte, gt, lte or lt")),
                    };
                    if !matches!(slot, Bound::Unbounded) {
                        return Err(bad(&bpath, "two lower or two upper bounds"));
                    }
                    *slot = b;
                }
                Filter::Range { field: field.clone(), lower, upper }
            }
            "prefix" => {
                let (field, p) = single(arg, &here)?;
                let fpath = format!("{here}.{field}");
                if kind_of(schema, field, &fpath)? != FieldType::Keyword {
                    return Err(bad(&fpath, "prefix is for keyword fields"));
                }
                let p = p.as_str().ok_or_else(|| bad(&fpath, "expected a string"))?;
                Filter::Prefix { field: field.clone(), prefix: p.to_owned() }
            }
            "exists" => {
                let field = arg.as_str().ok_or_else(|| bad(&here, "expected a field name"))?;
                if kind_of(schema, field, &here)? == FieldType::Json {
                    return Err(bad(&here, "json fields are not indexed"));
                }
                Filter::Exists { field: field.to_owned() }
            }
            "bbox" | "radius" => {
                let (field, o) = single(arg, &here)?;
                let fpath = format!("{here}.{field}");
                if kind_of(schema, field, &fpath)? != FieldType::GeoPoint {
                    return Err(bad(&fpath, format!("{op} is for geo_point fields")));
                }
                let o = o.as_object().ok_or_else(|| bad(&fpath, "expected an object"))?;
                let field = field.clone();
                if op == "bbox" {
                    let (west, south) = (number(o, "west", &fpath)?, number(o, "south", &fpath)?);
                    let (east, north) = (number(o, "east", &fpath)?, number(o, "north", &fpath)?);
                    if south > north || !(-90.0..=90.0).contains(&south) || !(-90.0..=90.0).contains(&north) {
                        return Err(bad(&fpath, "south and north are latitudes in [-90, 90], south <= north"));
                    }
                    if !(-180.0..=180.0).contains(&west) || !(-180.0..=180.0).contains(&east) {
                        return Err(bad(
                            &fpath,
                            "west and east are longitudes in [-180, 180] (west > east crosses the antimeridian)",
                        ));
                    }
                    Filter::BBox { field, west, south, east, north }
                } else {
                    let (lat, lon) = (number(o, "lat", &fpath)?, number(o, "lon", &fpath)?);
                    let meters = number(o, "meters", &fpath)?;
                    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) || meters < 0.0 {
                        return Err(bad(&fpath, "lat in [-90, 90], lon in [-180, 180], meters >= 0"));
                    }
                    Filter::Radius { field, lat, lon, meters }
                }
            }
            other => {
                return Err(bad(
                    path,
                    format!("unknown filter {other:?}: and, or, not, term, terms, range, prefix, exists, bbox, radius"),
                ))
            }
        })
    }
}

fn check_value(kind: FieldType, v: &Json, path: &str) -> Result<(), CollectionError> {
    let ok = match kind {
        FieldType::Keyword => v.is_string(),
        FieldType::Integer => v.is_i64(),
        FieldType::Float => v.as_f64().is_some_and(f64::is_finite),
        FieldType::Bool => v.is_boolean(),
        FieldType::Date => return parse_date(v).map(|_| ()).map_err(|e| bad(path, e)),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(bad(path, format!("{v} does not fit a {kind:?} field")))
    }
}

/// A filter resolved against one version's columns.
pub(crate) enum Compiled<'a> {
    All,
    Nothing,
    And(Vec<Compiled<'a>>),
    Or(Vec<Compiled<'a>>),
    Not(Box<Compiled<'a>>),
    /// Rows holding any of these term ids (sorted).
    Keyword {
        col: &'a super::index::KeywordColumn,
        terms: Vec<u32>,
        /// The terms' bit sets, when every one has one.
        dense: Option<Vec<&'a super::index::Bits>>,
    },
    Int {
        col: &'a super::index::NumColumn<i64>,
        lo: i64,
        hi: i64,
    },
    Float {
        col: &'a super::index::NumColumn<f64>,
        lo: Bound<f64>,
        hi: Bound<f64>,
    },
    FloatIn {
        col: &'a super::index::NumColumn<f64>,
        values: Vec<f64>,
    },
    Bool {
        col: &'a [u8],
        value: u8,
    },
    Present {
        col: &'a Column,
    },
    BBox {
        col: &'a super::index::GeoColumn,
        west: f64,
        south: f64,
        east: f64,
        north: f64,
    },
    Radius {
        col: &'a super::index::GeoColumn,
        lat: f64,
        lon: f64,
        meters: f64,
    },
}

fn int_of(v: &Json, kind: FieldType) -> Option<i64> {
    if kind == FieldType::Date {
        parse_date(v).ok()
    } else {
        v.as_i64()
    }
}

/// Integer bounds as an inclusive range; `None` when empty.
pub(crate) fn int_bounds(lower: &Bound<Json>, upper: &Bound<Json>, kind: FieldType) -> Option<(i64, i64)> {
    let lo = match lower {
        Bound::Unbounded => i64::MIN,
        Bound::Included(v) => int_of(v, kind)?,
        Bound::Excluded(v) => int_of(v, kind)?.checked_add(1)?,
    };
    let hi = match upper {
        Bound::Unbounded => i64::MAX,
        Bound::Included(v) => int_of(v, kind)?,
        Bound::Excluded(v) => int_of(v, kind)?.checked_sub(1)?,
    };
    (lo <= hi).then_some((lo, hi))
}

impl Filter {
    /// Resolves the filter against `index`; fields were checked at parse.
    pub(crate) fn compile<'a>(&self, index: &'a Index, schema: &Schema) -> Compiled<'a> {
        let col = |f: &str| index.column(f).map(|(_, c)| c);
        let spec = |f: &str| schema.spec(f).cloned().unwrap_or_else(|| super::FieldSpec::new(FieldType::Json));
        match self {
            Filter::All => Compiled::All,
            Filter::And(v) => Compiled::And(v.iter().map(|f| f.compile(index, schema)).collect()),
            Filter::Or(v) => Compiled::Or(v.iter().map(|f| f.compile(index, schema)).collect()),
            Filter::Not(f) => Compiled::Not(Box::new(f.compile(index, schema))),
            Filter::Terms { field, values } => {
                let s = spec(field);
                match col(field) {
                    Some(Column::Keyword(c)) => {
                        let mut terms: Vec<u32> = values
                            .iter()
                            .filter_map(|v| v.as_str())
                            .filter_map(|v| c.term(&normalise_keyword(v, s.lowercase, s.fold)))
                            .collect();
                        terms.sort_unstable();
                        terms.dedup();
                        keyword(c, terms)
                    }
                    Some(Column::Int(c)) => Compiled::Or(
                        values
                            .iter()
                            .filter_map(|v| int_of(v, s.kind))
                            .map(|i| Compiled::Int { col: c, lo: i, hi: i })
                            .collect(),
                    ),
                    Some(Column::Float(c)) => {
                        Compiled::FloatIn { col: c, values: values.iter().filter_map(Json::as_f64).collect() }
                    }
                    Some(Column::Bool(c)) => Compiled::Or(
                        values
                            .iter()
                            .filter_map(Json::as_bool)
                            .map(|b| Compiled::Bool { col: c, value: u8::from(b) })
                            .collect(),
                    ),
                    _ => Compiled::Nothing,
                }
            }
            Filter::Range { field, lower, upper } => match col(field) {
                Some(Column::Int(c)) => match int_bounds(lower, upper, spec(field).kind) {
                    Some((lo, hi)) => Compiled::Int { col: c, lo, hi },
                    None => Compiled::Nothing,
                },
                Some(Column::Float(c)) => {
                    let f = |b: &Bound<Json>| match b {
                        Bound::Unbounded => Bound::Unbounded,
                        Bound::Included(v) => Bound::Included(v.as_f64().unwrap_or(f64::NAN)),
                        Bound::Excluded(v) => Bound::Excluded(v.as_f64().unwrap_or(f64::NAN)),
                    };
                    Compiled::Float { col: c, lo: f(lower), hi: f(upper) }
                }
                _ => Compiled::Nothing,
            },
            Filter::Prefix { field, prefix } => match col(field) {
                Some(Column::Keyword(c)) => {
                    let s = spec(field);
                    let p = normalise_keyword(prefix, s.lowercase, s.fold);
                    keyword(c, c.prefix(&p).collect())
                }
                _ => Compiled::Nothing,
            },
            Filter::Exists { field } => match col(field) {
                Some(c) => Compiled::Present { col: c },
                None => Compiled::Nothing,
            },
            Filter::BBox { field, west, south, east, north } => match col(field) {
                Some(Column::Geo(c)) => {
                    Compiled::BBox { col: c, west: *west, south: *south, east: *east, north: *north }
                }
                _ => Compiled::Nothing,
            },
            Filter::Radius { field, lat, lon, meters } => match col(field) {
                Some(Column::Geo(c)) => Compiled::Radius { col: c, lat: *lat, lon: *lon, meters: *meters },
                _ => Compiled::Nothing,
            },
        }
    }
}

fn keyword(col: &super::index::KeywordColumn, terms: Vec<u32>) -> Compiled<'_> {
    let dense = terms.iter().map(|&t| col.dense(t)).collect();
    Compiled::Keyword { col, terms, dense }
}

fn in_bounds(v: f64, lo: Bound<f64>, hi: Bound<f64>) -> bool {
    (match lo {
        Bound::Unbounded => true,
        Bound::Included(l) => v >= l,
        Bound::Excluded(l) => v > l,
    }) && match hi {
        Bound::Unbounded => true,
        Bound::Included(h) => v <= h,
        Bound::Excluded(h) => v < h,
    }
}

impl Compiled<'_> {
    /// Whether row `r` passes.
    pub fn matches(&self, r: u32) -> bool {
        let i = r as usize;
        match self {
            Compiled::All => true,
            Compiled::Nothing => false,
            Compiled::And(v) => v.iter().all(|f| f.matches(r)),
            Compiled::Or(v) => v.iter().any(|f| f.matches(r)),
            Compiled::Not(f) => !f.matches(r),
            Compiled::Keyword { dense: Some(sets), .. } => sets.iter().any(|b| b.get(r)),
            Compiled::Keyword { col, terms, .. } => match terms.as_slice() {
                [] => false,
                [t] => col.of(r).contains(t),
                many => col.of(r).iter().any(|t| many.binary_search(t).is_ok()),
            },
            Compiled::Int { col, lo, hi } => col.present.get(r) && (*lo..=*hi).contains(&col.values[i]),
            Compiled::Float { col, lo, hi } => col.present.get(r) && in_bounds(col.values[i], *lo, *hi),
            Compiled::FloatIn { col, values } => {
                // Numeric equality, as a range [v, v] tests it: 0 is also -0.0.
                col.present.get(r) && values.iter().any(|v| *v == col.values[i])
            }
            Compiled::Bool { col, value } => col[i] == *value,
            Compiled::Present { col } => match col {
                Column::Keyword(c) => !c.of(r).is_empty(),
                Column::Int(c) => c.present.get(r),
                Column::Float(c) => c.present.get(r),
                Column::Bool(c) => c[i] != 2,
                Column::Geo(c) => !c.points[i][0].is_nan(),
                Column::Text(c) => c.lens[i] > 0,
                Column::Stored => false,
            },
            Compiled::BBox { col, west, south, east, north } => {
                let [lat, lon] = col.points[i];
                let lon_in = if west <= east { lon >= *west && lon <= *east } else { lon >= *west || lon <= *east };
                lat >= *south && lat <= *north && lon_in
            }
            Compiled::Radius { col, lat, lon, meters } => {
                let [a, o] = col.points[i];
                !a.is_nan() && haversine_m(Point { lat: *lat, lon: *lon }, Point { lat: a, lon: o }) <= *meters
            }
        }
    }

    /// Rows that may match, fewer than all when the filter says so
    /// cheaply (a keyword term at the top, or in every branch of an `and`):
    /// each still goes through [`Compiled::matches`]. `None`: every row.
    pub fn candidates(&self) -> Option<Vec<u32>> {
        match self {
            Compiled::Nothing => Some(Vec::new()),
            Compiled::Keyword { col, terms, .. } => {
                let mut rows: Vec<u32> = terms.iter().flat_map(|&t| col.postings[t as usize].iter().copied()).collect();
                if terms.len() > 1 {
                    rows.sort_unstable();
                    rows.dedup();
                }
                Some(rows)
            }
            Compiled::Int { col, lo, hi } => {
                let (a, b) = col.between(*lo, *hi);
                let mut rows = col.sorted[a..b].to_vec();
                rows.sort_unstable();
                Some(rows)
            }
            Compiled::And(v) => v.iter().filter_map(Compiled::candidates).min_by_key(Vec::len),
            _ => None,
        }
    }
}
