//! Collections through the library: every query answer is checked against
//! a plain evaluation of the same query over the records (the oracle), on
//! random records and random queries, paging with the cursor to the end.

use std::cmp::Ordering;

use cairn::collection::{CollectionError, FieldSpec, FieldType, Filter, Query, Schema, SortKey};
use cairn::Database;
use serde_json::{json, Value as Json};

#[path = "common/rng.rs"]
mod rng;
use rng::Rng;

const STATUSES: [&str; 5] = ["new", "verified", "rejected", "pending", "Verified"];
const BASE: i64 = 1_796_547_600; // 2026-12-06T09:00:00Z

fn schema() -> Schema {
    Schema::new("id")
        .field("status", FieldSpec { lowercase: true, ..FieldSpec::new(FieldType::Keyword) })
        .field("tags", FieldSpec::new(FieldType::Keyword))
        .field("sender", FieldSpec::new(FieldType::Keyword))
        .field("at", FieldSpec::new(FieldType::Date))
        .field("n", FieldSpec::new(FieldType::Integer))
        .field("x", FieldSpec::new(FieldType::Float))
        .field("ok", FieldSpec::new(FieldType::Bool))
        .field("pos", FieldSpec::new(FieldType::GeoPoint))
        .field("extra", FieldSpec::new(FieldType::Json))
}

fn record(rng: &mut Rng, i: usize) -> Json {
    let mut r = json!({ "id": format!("r{:05}", rng.below(100_000) * 100 + i as u64 % 100) });
    let o = r.as_object_mut().unwrap();
    if rng.chance(90) {
        o.insert("status".into(), json!(STATUSES[rng.below(5) as usize]));
    }
    if rng.chance(70) {
        let tags: Vec<String> = (0..=rng.below(3)).map(|_| format!("t{}", rng.below(6))).collect();
        o.insert("tags".into(), json!(tags));
    }
    o.insert("sender".into(), json!(format!("s{}", rng.below(40))));
    if rng.chance(85) {
        // Few distinct instants: many ties; half as text, half as numbers.
        let secs = BASE + 60 * rng.below(50) as i64;
        if rng.chance(50) {
            o.insert("at".into(), json!(secs));
        } else {
            let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap();
            o.insert("at".into(), json!(t.format(&time::format_description::well_known::Rfc3339).unwrap()));
        }
    }
    if rng.chance(80) {
        o.insert("n".into(), json!(rng.below(20) as i64 - 10));
    }
    if rng.chance(80) {
        // Negative and positive, with ties: the float sort key is exact.
        o.insert("x".into(), json!((rng.below(1000) as f64 - 500.0) / 8.0));
    }
    if rng.chance(80) {
        o.insert("ok".into(), json!(rng.chance(50)));
    }
    if rng.chance(80) {
        // Around the antimeridian and elsewhere.
        let lon = if rng.chance(50) {
            170.0 + rng.below(2000) as f64 / 100.0
        } else {
            rng.below(36000) as f64 / 100.0 - 180.0
        };
        let lon = if lon > 180.0 { lon - 360.0 } else { lon };
        o.insert("pos".into(), json!({"lat": rng.below(1800) as f64 / 10.0 - 90.0, "lon": lon}));
    }
    o.insert("extra".into(), json!({"i": i}));
    r
}

// ------------------------------------------------------------------ oracle

fn date_secs(v: &Json) -> i64 {
    match v {
        Json::Number(n) => n.as_i64().unwrap() * 1000,
        Json::String(s) => {
            let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
            (t.unix_timestamp_nanos() / 1_000_000) as i64
        }
        _ => unreachable!(),
    }
}

fn keywords(r: &Json, field: &str) -> Vec<String> {
    let lower = field == "status";
    let norm = |s: &str| if lower { s.to_lowercase() } else { s.to_owned() };
    match r.get(field) {
        Some(Json::String(s)) => vec![norm(s)],
        Some(Json::Array(a)) => {
            let mut v: Vec<String> = a.iter().map(|x| norm(x.as_str().unwrap())).collect();
            v.sort();
            v.dedup();
            v
        }
        _ => Vec::new(),
    }
}

/// A field's value as a number for comparisons (dates in ms).
fn num(r: &Json, field: &str) -> Option<f64> {
    let v = r.get(field)?;
    Some(match field {
        "at" => date_secs(v) as f64,
        "ok" => f64::from(u8::from(v.as_bool()?)),
        _ => v.as_f64()?,
    })
}

fn haversine(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6_371_008.8 * a.sqrt().asin()
}

fn passes(f: &Filter, r: &Json) -> bool {
    use std::ops::Bound::*;
    match f {
        Filter::All => true,
        Filter::And(v) => v.iter().all(|f| passes(f, r)),
        Filter::Or(v) => v.iter().any(|f| passes(f, r)),
        Filter::Not(f) => !passes(f, r),
        Filter::Terms { field, values } => match field.as_str() {
            "status" | "tags" | "sender" => {
                let have = keywords(r, field);
                let norm = |s: &str| if field == "status" { s.to_lowercase() } else { s.to_owned() };
                values.iter().any(|v| have.contains(&norm(v.as_str().unwrap())))
            }
            "ok" => r.get("ok").is_some_and(|b| values.contains(b)),
            _ => {
                let Some(x) = num(r, field) else { return false };
                values.iter().any(|v| {
                    let w = if field == "at" { date_secs(v) as f64 } else { v.as_f64().unwrap() };
                    w == x
                })
            }
        },
        Filter::Range { field, lower, upper } => {
            let Some(x) = num(r, field) else { return false };
            let val = |v: &Json| if field == "at" { date_secs(v) as f64 } else { v.as_f64().unwrap() };
            (match lower {
                Unbounded => true,
                Included(v) => x >= val(v),
                Excluded(v) => x > val(v),
            }) && match upper {
                Unbounded => true,
                Included(v) => x <= val(v),
                Excluded(v) => x < val(v),
            }
        }
        Filter::Prefix { field, prefix } => keywords(r, field).iter().any(|k| k.starts_with(prefix.as_str())),
        Filter::Exists { field } => r.get(field).is_some_and(|v| !v.is_null()),
        Filter::BBox { west, south, east, north, .. } => r.get("pos").is_some_and(|p| {
            let (lat, lon) = (p["lat"].as_f64().unwrap(), p["lon"].as_f64().unwrap());
            let lon_in = if west <= east { lon >= *west && lon <= *east } else { lon >= *west || lon <= *east };
            lat >= *south && lat <= *north && lon_in
        }),
        Filter::Radius { lat, lon, meters, .. } => r
            .get("pos")
            .is_some_and(|p| haversine(*lat, *lon, p["lat"].as_f64().unwrap(), p["lon"].as_f64().unwrap()) <= *meters),
    }
}

fn sort_value(r: &Json, field: &str) -> Option<Json> {
    match field {
        "status" | "tags" | "sender" => keywords(r, field).first().map(|s| json!(s)),
        _ => num(r, field).map(|x| json!(x)),
    }
}

fn cmp_json(a: &Json, b: &Json) -> Ordering {
    match (a, b) {
        (Json::String(x), Json::String(y)) => x.cmp(y),
        _ => a.as_f64().unwrap().total_cmp(&b.as_f64().unwrap()),
    }
}

fn oracle_cmp(sort: &[SortKey], a: &Json, b: &Json) -> Ordering {
    for k in sort {
        let (x, y) = (sort_value(a, &k.field), sort_value(b, &k.field));
        let o = match (x, y) {
            (Some(x), Some(y)) => {
                let o = cmp_json(&x, &y);
                if k.descending {
                    o.reverse()
                } else {
                    o
                }
            }
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    a["id"].as_str().unwrap().cmp(b["id"].as_str().unwrap())
}

fn oracle(records: &[Json], q: &Query) -> Vec<String> {
    let mut hits: Vec<&Json> = records.iter().filter(|r| passes(&q.filter, r)).collect();
    hits.sort_by(|a, b| oracle_cmp(&q.sort, a, b));
    if let Some(c) = &q.collapse {
        let mut seen = std::collections::HashSet::new();
        hits.retain(|r| seen.insert(keywords(r, c).first().cloned()));
    }
    hits.iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect()
}

// --------------------------------------------------------------- queries

fn random_filter(rng: &mut Rng, depth: u32) -> Filter {
    let leaf = depth >= 2 || rng.chance(60);
    if !leaf {
        let n = rng.below(3) + 1;
        let parts = (0..n).map(|_| random_filter(rng, depth + 1)).collect();
        return match rng.below(3) {
            0 => Filter::And(parts),
            1 => Filter::Or(parts),
            _ => Filter::Not(Box::new(random_filter(rng, depth + 1))),
        };
    }
    let date = |rng: &mut Rng| {
        let secs = BASE + 60 * rng.below(52) as i64 - 60;
        if rng.chance(50) {
            json!(secs)
        } else {
            let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap();
            json!(t.format(&time::format_description::well_known::Rfc3339).unwrap())
        }
    };
    use std::ops::Bound::*;
    let bound = |rng: &mut Rng, v: Json| match rng.below(3) {
        0 => Unbounded,
        1 => Included(v),
        _ => Excluded(v),
    };
    match rng.below(10) {
        0 => Filter::Terms { field: "status".into(), values: vec![json!(STATUSES[rng.below(5) as usize])] },
        1 => Filter::Terms {
            field: "tags".into(),
            values: (0..=rng.below(3)).map(|_| json!(format!("t{}", rng.below(7)))).collect(),
        },
        2 => {
            let a = date(rng);
            let b = date(rng);
            Filter::Range { field: "at".into(), lower: bound(rng, a), upper: bound(rng, b) }
        }
        3 => {
            let (a, b) = (json!(rng.below(20) as i64 - 10), json!(rng.below(20) as i64 - 10));
            Filter::Range { field: "n".into(), lower: bound(rng, a), upper: bound(rng, b) }
        }
        4 => {
            let (a, b) = (json!((rng.below(1000) as f64 - 500.0) / 8.0), json!((rng.below(1000) as f64 - 500.0) / 8.0));
            Filter::Range { field: "x".into(), lower: bound(rng, a), upper: bound(rng, b) }
        }
        5 => Filter::Prefix { field: "sender".into(), prefix: format!("s{}", rng.below(5)) },
        6 => Filter::Exists { field: ["status", "tags", "at", "n", "x", "ok", "pos"][rng.below(7) as usize].into() },
        7 => {
            let west = rng.below(360) as f64 - 180.0;
            let east = rng.below(360) as f64 - 180.0;
            let south = rng.below(180) as f64 - 90.0;
            let north = (south + rng.below(120) as f64).min(90.0);
            Filter::BBox { field: "pos".into(), west, south, east, north }
        }
        8 => Filter::Radius {
            field: "pos".into(),
            lat: rng.below(180) as f64 - 90.0,
            lon: rng.below(360) as f64 - 180.0,
            meters: rng.below(4_000_000) as f64,
        },
        _ => Filter::Terms { field: "ok".into(), values: vec![json!(rng.chance(50))] },
    }
}

fn random_query(rng: &mut Rng) -> Query {
    let fields = ["at", "n", "x", "status", "sender", "ok", "tags"];
    let sort = (0..rng.below(3))
        .map(|_| SortKey { field: fields[rng.below(7) as usize].into(), descending: rng.chance(50) })
        .collect();
    Query {
        filter: if rng.chance(15) { Filter::All } else { random_filter(rng, 0) },
        sort,
        limit: [1, 3, 7, 50, 1000][rng.below(5) as usize],
        collapse: rng.chance(15).then(|| "sender".to_owned()),
        total: rng.chance(50),
        ..Query::default()
    }
}

fn open(dir: &std::path::Path) -> Database {
    Database::open(dir).unwrap()
}

fn load(db: &Database, rng: &mut Rng, n: usize) -> Vec<Json> {
    db.put_collection("events", &schema()).unwrap();
    let mut records = Vec::new();
    db.write_collection("events", |w| {
        for i in 0..n {
            let r = record(rng, i);
            w.put_json(&r)?;
            records.push(r);
        }
        Ok(())
    })
    .unwrap();
    // A later record with the same id replaces the earlier one.
    let mut by_id = std::collections::BTreeMap::new();
    for r in records {
        by_id.insert(r["id"].as_str().unwrap().to_owned(), r);
    }
    by_id.into_values().collect()
}

fn page_all(db: &Database, q: &Query) -> (Vec<String>, Option<u64>) {
    let mut got = Vec::new();
    let mut q = q.clone();
    let mut total = None;
    for _ in 0..10_000 {
        let c = db.collection_for("events", q.cursor.as_deref()).unwrap();
        let r = c.query(&q).unwrap();
        total = total.or(r.total);
        assert!(r.hits.len() <= q.limit);
        got.extend(r.hits.into_iter().map(|h| h.id));
        match r.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => return (got, total),
        }
    }
    panic!("the cursor never ended");
}

#[test]
fn random_queries_page_through_exactly_the_oracles_hits() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let records = load(&db, &mut rng, 3000);
    assert_eq!(db.collection("events").unwrap().len(), records.len());
    for i in 0..400 {
        let q = random_query(&mut rng);
        let want = oracle(&records, &q);
        let (got, total) = page_all(&db, &q);
        assert_eq!(got, want, "query {i}: {q:?}");
        if q.total && q.collapse.is_none() {
            assert_eq!(total, Some(want.len() as u64), "query {i}: {q:?}");
        }
    }
}

#[test]
fn facets_count_every_match() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut rng = Rng(7);
    let records = load(&db, &mut rng, 2000);
    for filter in [Filter::All, Filter::Terms { field: "ok".into(), values: vec![json!(true)] }] {
        let q = Query {
            filter: filter.clone(),
            facets: vec!["tags".into(), "status".into()],
            limit: 0,
            ..Query::default()
        };
        let r = db.collection("events").unwrap().query(&q).unwrap();
        for (field, counts) in &r.facets {
            let mut want = std::collections::BTreeMap::<String, u64>::new();
            for rec in records.iter().filter(|r| passes(&filter, r)) {
                for k in keywords(rec, field) {
                    *want.entry(k).or_default() += 1;
                }
            }
            let got: std::collections::BTreeMap<String, u64> = counts.iter().cloned().collect();
            assert_eq!(got, want, "{field}");
            assert!(counts.windows(2).all(|w| w[0].1 >= w[1].1), "most frequent first");
        }
    }
}

#[test]
fn writes_deletes_and_reopen_keep_the_right_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(11);
    let records = {
        let db = open(dir.path());
        let records = load(&db, &mut rng, 500);
        let victim = records[3]["id"].as_str().unwrap().to_owned();
        let ((), c) = db
            .write_collection("events", |w| {
                assert!(w.delete(&victim)?);
                assert!(!w.delete("no-such-id")?);
                Ok(())
            })
            .unwrap();
        assert_eq!((c.deleted, c.total), (1, records.len() as u64 - 1));
        let ok_true = Filter::Terms { field: "ok".into(), values: vec![json!(true)] };
        let (n, _) = db.write_collection("events", |w| w.delete_where(&ok_true)).unwrap();
        let left: Vec<Json> =
            records.into_iter().filter(|r| r["id"] != json!(victim) && !passes(&ok_true, r)).collect();
        assert!(n > 0);
        assert_eq!(db.collection("events").unwrap().len(), left.len());
        // A record that does not fit leaves the commit undone.
        let before = db.generation();
        let e = db
            .write_collection("events", |w| {
                w.put_json(json!({"id": "new1", "n": 1}))?;
                w.put_json(json!({"id": "new2", "n": "one"}))
            })
            .unwrap_err();
        assert!(matches!(&e, CollectionError::BadRecord { path, .. } if path == "n"), "{e}");
        assert_eq!(db.generation(), before);
        assert!(db.collection("events").unwrap().get("new1").unwrap().is_none());
        left
    };
    let db = open(dir.path());
    let c = db.collection("events").unwrap();
    assert_eq!(c.len(), records.len());
    let q = Query { sort: vec![SortKey { field: "at".into(), descending: true }], limit: 10_000, ..Query::default() };
    let got: Vec<String> = c.query(&q).unwrap().hits.into_iter().map(|h| h.id).collect();
    assert_eq!(got, oracle(&records, &q));
    let first = &records[0];
    assert_eq!(c.get(first["id"].as_str().unwrap()).unwrap().as_ref(), Some(first));
}

#[test]
fn a_cursor_pages_through_its_own_version_while_writes_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut rng = Rng(5);
    let records = load(&db, &mut rng, 300);
    let q = Query { sort: vec![SortKey { field: "n".into(), descending: false }], limit: 40, ..Query::default() };
    let want = oracle(&records, &q);
    let mut got = Vec::new();
    let mut q2 = q.clone();
    loop {
        let r = db.collection_for("events", q2.cursor.as_deref()).unwrap().query(&q2).unwrap();
        got.extend(r.hits.into_iter().map(|h| h.id));
        // Writes between pages (fewer than the versions kept): the cursor
        // keeps to its version.
        if got.len() <= 120 {
            db.write_collection("events", |w| w.put_json(json!({"id": format!("late{}", got.len()), "n": -100})))
                .unwrap();
        }
        match r.next_cursor {
            Some(c) => q2.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(got, want);
    // Once its version is no longer kept, the cursor is refused, not wrong.
    let first = db.collection("events").unwrap().query(&q).unwrap().next_cursor.unwrap();
    for i in 0..6 {
        db.write_collection("events", |w| w.put_json(json!({"id": format!("later{i}")}))).unwrap();
    }
    let q3 = Query { cursor: Some(first), ..q };
    let e = db.collection_for("events", q3.cursor.as_deref()).unwrap().query(&q3).unwrap_err();
    assert!(matches!(e, CollectionError::CursorExpired), "{e}");
}

#[test]
fn bad_queries_name_the_field() {
    let s = schema();
    let bad = |body: Json| Query::parse(&body, &s).unwrap_err().to_string();
    assert!(bad(json!({"filter": {"range": {"status": {"gte": "a"}}}})).contains("filter.range.status"));
    assert!(bad(json!({"filter": {"term": {"n": "ten"}}})).contains("filter.term.n"));
    assert!(bad(json!({"filter": {"and": [{"term": {"nope": 1}}]}})).contains("filter.and[0].term.nope"));
    assert!(bad(json!({"sort": ["pos"]})).contains("sort[0]"));
    assert!(bad(json!({"facets": ["n"]})).contains("facets[0]"));
    assert!(bad(json!({"limit": 100_000})).contains("limit"));
    assert!(bad(json!({"cursor": "zzz"})).contains("cursor"));
    assert!(bad(json!({"filter": {"range": {"at": {"gte": "yesterday"}}}})).contains("RFC 3339"));
}

#[test]
fn collections_survive_a_snapshot_and_leave_the_geocoder_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut rng = Rng(3);
    let records = load(&db, &mut rng, 200);
    let mut snap = Vec::new();
    db.create_snapshot(&mut snap).unwrap();
    db.drop_collection("events").unwrap();
    assert!(matches!(db.collection("events"), Err(CollectionError::NotFound(_))));
    db.restore_snapshot(&mut snap.as_slice()).unwrap();
    let c = db.collection("events").unwrap();
    assert_eq!(c.len(), records.len());
    let other = tempfile::tempdir().unwrap();
    let db2 = open(other.path());
    db2.restore_snapshot(&mut snap.as_slice()).unwrap();
    assert_eq!(db2.collection("events").unwrap().len(), records.len());
    assert_eq!(db2.len(), 0, "no address records came from nowhere");
}

/// Optimal string alignment distance (a transposition is one edit).
fn osa(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[test]
fn text_queries_match_every_word_with_prefix_and_typos() {
    const VOCAB: [&str; 12] = [
        "warehouse",
        "warehous",
        "wharehouse",
        "ware",
        "capital",
        "capitol",
        "cap",
        "fox",
        "foxes",
        "office",
        "offices",
        "branch",
    ];
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let schema = Schema::new("id")
        .field("note", FieldSpec::new(FieldType::Text))
        .field("tag", FieldSpec::new(FieldType::Keyword));
    db.put_collection("notes", &schema).unwrap();
    let mut rng = Rng(99);
    let mut notes = Vec::new();
    db.write_collection("notes", |w| {
        for i in 0..600 {
            let words: Vec<&str> = (0..=rng.below(4)).map(|_| VOCAB[rng.below(12) as usize]).collect();
            let note = words.join(if rng.chance(50) { " " } else { ", " });
            w.put_json(json!({"id": format!("n{i:04}"), "note": note, "tag": format!("t{}", i % 3)}))?;
            notes.push((format!("n{i:04}"), words.iter().map(|w| w.to_owned().to_owned()).collect::<Vec<String>>()));
        }
        Ok(())
    })
    .unwrap();
    let c = db.collection("notes").unwrap();
    for query in [
        "warehouse",
        "warehouse capital",
        "capital ware",
        "fox offic",
        "wharehouse",
        "capitol branch",
        "cap",
        "foxes fox",
    ] {
        let q_words: Vec<&str> = query.split(' ').collect();
        let matches = |words: &[String]| {
            q_words.iter().enumerate().all(|(i, w)| {
                let last = i + 1 == q_words.len();
                let typos = if w.len() >= 9 { 2 } else { usize::from(w.len() >= 5) };
                words.iter().any(|t| t == w || (last && t.starts_with(w)) || osa(t, w) <= typos)
            })
        };
        let mut want: Vec<&str> = notes.iter().filter(|(_, words)| matches(words)).map(|(id, _)| id.as_str()).collect();
        want.sort_unstable();
        let r = c.query(&Query { text: Some(query.into()), limit: 10_000, total: true, ..Query::default() }).unwrap();
        let mut got: Vec<&str> = r.hits.iter().map(|h| h.id.as_str()).collect();
        assert!(r.hits.windows(2).all(|w| w[0].score >= w[1].score), "{query}: by score");
        got.sort_unstable();
        assert_eq!(got, want, "{query}");
        assert_eq!(r.total, Some(want.len() as u64));
        // With a filter and paged: the same hits, each once.
        let filter = Filter::Terms { field: "tag".into(), values: vec![json!("t1")] };
        let mut q = Query { text: Some(query.into()), filter: filter.clone(), limit: 7, ..Query::default() };
        let mut paged = Vec::new();
        loop {
            let r = c.query(&q).unwrap();
            paged.extend(r.hits.into_iter().map(|h| h.id));
            match r.next_cursor {
                Some(cur) => q.cursor = Some(cur),
                None => break,
            }
        }
        let mut filtered: Vec<String> =
            want.iter().filter(|id| id[1..].parse::<usize>().unwrap() % 3 == 1).map(|s| (*s).to_owned()).collect();
        paged.sort();
        filtered.sort();
        assert_eq!(paged, filtered, "{query} paged");
    }
}
