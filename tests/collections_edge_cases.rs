//! Collections at their edges (mapped records, dense keyword bit
//! sets, sorted walks that skip the range conjunct they are bounded by,
//! runs of equal values among matches, borrowed raw hits): every answer is
//! checked against a plain evaluation of the query over the records that
//! were written (the oracle).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound::{self, Excluded, Included, Unbounded};

use cairn::collection::{CollectionError, FieldSpec, FieldType, Filter, Query, Schema, SortKey};
use cairn::Database;
use serde_json::{json, Value as Json};

#[path = "common/rng.rs"]
mod rng;
use rng::Rng;

const BASE: i64 = 1_796_547_600; // 2026-12-06T09:00:00Z

fn schema() -> Schema {
    Schema::new("id")
        // Lowercased: "Alpha" and "alpha" are one term.
        .field("kind", FieldSpec { lowercase: true, ..FieldSpec::new(FieldType::Keyword) })
        // Folded: "Élan", "ELAN" and "elan" are one term.
        .field("tag", FieldSpec { fold: true, ..FieldSpec::new(FieldType::Keyword) })
        .field("n", FieldSpec::new(FieldType::Integer))
        .field("at", FieldSpec::new(FieldType::Date))
        .field("x", FieldSpec::new(FieldType::Float))
        .field("body", FieldSpec::new(FieldType::Json))
}

fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn fold_kw(s: &str) -> String {
    s.split_whitespace().map(cairn::text::analysis::fold).collect::<Vec<_>>().join(" ").trim().to_owned()
}

/// One record, as written, and what the oracle compares it by.
#[derive(Clone, Debug)]
struct Rec {
    id: String,
    json: Json,
    kind: Vec<String>,
    tag: Vec<String>,
    n: Option<i64>,
    /// Milliseconds.
    at: Option<i64>,
    x: Option<f64>,
}

impl Rec {
    fn of(json: Json) -> Rec {
        let kws = |field: &str, norm: &dyn Fn(&str) -> String| -> Vec<String> {
            let mut v: Vec<String> = match json.get(field) {
                Some(Json::String(s)) => vec![norm(s)],
                Some(Json::Array(a)) => a.iter().map(|s| norm(s.as_str().unwrap())).collect(),
                _ => Vec::new(),
            };
            v.sort();
            v.dedup();
            v
        };
        Rec {
            id: json["id"].as_str().unwrap().to_owned(),
            kind: kws("kind", &|s| s.to_lowercase()),
            tag: kws("tag", &fold_kw),
            n: json.get("n").and_then(Json::as_i64),
            at: json.get("at").map(date_ms),
            x: json.get("x").and_then(Json::as_f64),
            json,
        }
    }
}

fn date_ms(v: &Json) -> i64 {
    match v {
        Json::Number(n) => n.as_i64().unwrap() * 1000,
        Json::String(s) => {
            let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
            (t.unix_timestamp_nanos() / 1_000_000) as i64
        }
        _ => unreachable!("{v}"),
    }
}

const TAGS: [&str; 7] = ["Élan", "elan", "ELAN", "über", "Uber", "zeta ω", "Ångström"];
const XS: [f64; 10] = [-2.5, -1.0, -0.0, 0.0, 0.5, 1.0, 1e-300, -1e300, 3.25, -0.5];

fn random_record(rng: &mut Rng, i: usize) -> Json {
    let mut r = json!({ "id": format!("k{:04}", (rng.below(2000) as usize * 7 + i) % 5000) });
    let o = r.as_object_mut().unwrap();
    // Frequencies: alpha (any case) about half, beta a quarter, gamma
    // about 1/30 (near the dense threshold), delta rare, epsilon very rare.
    let k = rng.below(1000);
    let kind = match k {
        0..=299 => Some(json!("alpha")),
        300..=399 => Some(json!("Alpha")),
        400..=449 => Some(json!("ALPHA")),
        450..=649 => Some(json!("beta")),
        650..=699 => Some(json!("beta-x")),
        700..=732 => Some(json!("gamma")),
        733..=740 => Some(json!("delta")),
        741 => Some(json!("epsilon")),
        742..=799 => Some(json!(["alpha", "delta"])),
        800..=849 => Some(json!(["Alpha", "alpha", "gamma"])),
        850..=899 => Some(json!([])),
        _ => None,
    };
    if let Some(kind) = kind {
        o.insert("kind".into(), kind);
    }
    if rng.chance(85) {
        let t = rng.below(100);
        let tag = match t {
            0..=39 => json!(TAGS[rng.below(3) as usize]),
            40..=79 => json!(TAGS[3 + rng.below(2) as usize]),
            80..=81 => json!("zeta ω"),
            82 => json!("Ångström"),
            _ => json!([TAGS[rng.below(7) as usize], TAGS[rng.below(7) as usize]]),
        };
        o.insert("tag".into(), tag);
    }
    if rng.chance(85) {
        let n = match rng.below(100) {
            0 => i64::MAX,
            1 => i64::MIN,
            _ => rng.below(7) as i64 - 3,
        };
        o.insert("n".into(), json!(n));
    }
    if rng.chance(85) {
        let secs = BASE + 60 * rng.below(8) as i64;
        o.insert("at".into(), if rng.chance(50) { json!(secs) } else { json!(rfc3339(secs)) });
    }
    if rng.chance(80) {
        o.insert("x".into(), json!(*rng.pick(&XS)));
    }
    o.insert("body".into(), json!({"i": i, "s": format!("\"quoted\" \\ é ✓ \u{1F600} {i}\n")}));
    r
}

// ------------------------------------------------------------------ oracle

fn kw_values(field: &str, values: &[Json]) -> Vec<String> {
    values
        .iter()
        .map(|v| {
            let s = v.as_str().unwrap();
            if field == "tag" {
                fold_kw(s)
            } else {
                s.to_lowercase()
            }
        })
        .collect()
}

fn in_bounds<T: PartialOrd>(x: T, lo: &Bound<T>, hi: &Bound<T>) -> bool {
    (match lo {
        Unbounded => true,
        Included(l) => x >= *l,
        Excluded(l) => x > *l,
    }) && match hi {
        Unbounded => true,
        Included(h) => x <= *h,
        Excluded(h) => x < *h,
    }
}

fn map_bound<T>(b: &Bound<Json>, f: impl Fn(&Json) -> T) -> Bound<T> {
    match b {
        Unbounded => Unbounded,
        Included(v) => Included(f(v)),
        Excluded(v) => Excluded(f(v)),
    }
}

fn passes(f: &Filter, r: &Rec) -> bool {
    match f {
        Filter::All => true,
        Filter::And(v) => v.iter().all(|f| passes(f, r)),
        Filter::Or(v) => v.iter().any(|f| passes(f, r)),
        Filter::Not(f) => !passes(f, r),
        Filter::Terms { field, values } => match field.as_str() {
            "kind" => kw_values(field, values).iter().any(|v| r.kind.contains(v)),
            "tag" => kw_values(field, values).iter().any(|v| r.tag.contains(v)),
            "n" => r.n.is_some_and(|n| values.iter().any(|v| v.as_i64() == Some(n))),
            "at" => r.at.is_some_and(|a| values.iter().any(|v| date_ms(v) == a)),
            "x" => r.x.is_some_and(|x| values.iter().any(|v| v.as_f64() == Some(x))),
            f => unreachable!("{f}"),
        },
        Filter::Range { field, lower, upper } => match field.as_str() {
            "n" => r.n.is_some_and(|n| {
                in_bounds(n, &map_bound(lower, |v| v.as_i64().unwrap()), &map_bound(upper, |v| v.as_i64().unwrap()))
            }),
            "at" => r.at.is_some_and(|a| in_bounds(a, &map_bound(lower, date_ms), &map_bound(upper, date_ms))),
            "x" => r.x.is_some_and(|x| {
                in_bounds(x, &map_bound(lower, |v| v.as_f64().unwrap()), &map_bound(upper, |v| v.as_f64().unwrap()))
            }),
            f => unreachable!("{f}"),
        },
        Filter::Prefix { field, prefix } => {
            let (have, p) = if field == "tag" { (&r.tag, fold_kw(prefix)) } else { (&r.kind, prefix.to_lowercase()) };
            have.iter().any(|k| k.starts_with(&p))
        }
        Filter::Exists { field } => match field.as_str() {
            "kind" => !r.kind.is_empty(),
            "tag" => !r.tag.is_empty(),
            "n" => r.n.is_some(),
            "at" => r.at.is_some(),
            "x" => r.x.is_some(),
            f => unreachable!("{f}"),
        },
        other => unreachable!("{other:?}"),
    }
}

fn key_cmp(field: &str, a: &Rec, b: &Rec) -> Option<Ordering> {
    // None when either misses the value (handled by the caller).
    Some(match field {
        "n" => a.n?.cmp(&b.n?),
        "at" => a.at?.cmp(&b.at?),
        "x" => a.x?.total_cmp(&b.x?),
        "kind" => a.kind.first()?.cmp(b.kind.first()?),
        "tag" => a.tag.first()?.cmp(b.tag.first()?),
        f => unreachable!("{f}"),
    })
}

fn has(field: &str, r: &Rec) -> bool {
    match field {
        "n" => r.n.is_some(),
        "at" => r.at.is_some(),
        "x" => r.x.is_some(),
        "kind" => !r.kind.is_empty(),
        "tag" => !r.tag.is_empty(),
        f => unreachable!("{f}"),
    }
}

fn oracle_cmp(sort: &[SortKey], a: &Rec, b: &Rec) -> Ordering {
    for k in sort {
        let o = match (has(&k.field, a), has(&k.field, b)) {
            (true, true) => {
                let o = key_cmp(&k.field, a, b).unwrap();
                if k.descending {
                    o.reverse()
                } else {
                    o
                }
            }
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => Ordering::Equal,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.id.cmp(&b.id)
}

fn oracle(records: &[Rec], q: &Query) -> Vec<String> {
    let mut hits: Vec<&Rec> = records.iter().filter(|r| passes(&q.filter, r)).collect();
    hits.sort_by(|a, b| oracle_cmp(&q.sort, a, b));
    if let Some(c) = &q.collapse {
        let mut seen = std::collections::HashSet::new();
        hits.retain(|r| seen.insert(if c == "kind" { r.kind.first().cloned() } else { r.tag.first().cloned() }));
    }
    hits.iter().map(|r| r.id.clone()).collect()
}

// --------------------------------------------------------------- helpers

fn open(dir: &std::path::Path) -> Database {
    Database::open(dir).unwrap()
}

/// Writes `records` in one commit; returns the collection's records after
/// it (a later record with the same id replaces an earlier one).
fn put_all(db: &Database, name: &str, current: &mut BTreeMap<String, Rec>, records: Vec<Json>) {
    db.write_collection(name, |w| {
        for r in &records {
            w.put_json(r)?;
        }
        Ok(())
    })
    .unwrap();
    for r in records {
        let rec = Rec::of(r);
        current.insert(rec.id.clone(), rec);
    }
}

fn load(db: &Database, rng: &mut Rng, n: usize) -> BTreeMap<String, Rec> {
    db.put_collection("ev", &schema()).unwrap();
    let mut current = BTreeMap::new();
    let records = (0..n).map(|i| random_record(rng, i)).collect();
    put_all(db, "ev", &mut current, records);
    current
}

fn values(m: &BTreeMap<String, Rec>) -> Vec<Rec> {
    m.values().cloned().collect()
}

/// Pages `q` to the end; every hit's doc is checked against `by_id`.
fn page_all(db: &Database, name: &str, q: &Query, by_id: &BTreeMap<String, Rec>) -> Vec<String> {
    let mut got = Vec::new();
    let mut q = q.clone();
    for _ in 0..100_000 {
        let c = db.collection_for(name, q.cursor.as_deref()).unwrap();
        let r = c.query(&q).unwrap_or_else(|e| panic!("{q:?}: {e}"));
        assert!(r.hits.len() <= q.limit);
        for h in r.hits {
            let want = &by_id.get(&h.id).unwrap_or_else(|| panic!("{q:?}: unknown id {:?}", h.id)).json;
            assert_eq!(&h.doc, want, "{q:?}: the doc of {}", h.id);
            got.push(h.id);
        }
        match r.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => return got,
        }
    }
    panic!("the cursor never ended: {q:?}");
}

fn s(field: &str, descending: bool) -> SortKey {
    SortKey { field: field.into(), descending }
}

fn range(field: &str, lower: Bound<Json>, upper: Bound<Json>) -> Filter {
    Filter::Range { field: field.into(), lower, upper }
}

fn terms(field: &str, values: &[Json]) -> Filter {
    Filter::Terms { field: field.into(), values: values.to_vec() }
}

// --------------------------------------------------------------- queries

fn bound(rng: &mut Rng, v: Json) -> Bound<Json> {
    match rng.below(3) {
        0 => Unbounded,
        1 => Included(v),
        _ => Excluded(v),
    }
}

fn random_range(rng: &mut Rng, field: &str) -> Filter {
    let v = |rng: &mut Rng| -> Json {
        match field {
            "n" => match rng.below(12) {
                0 => json!(i64::MAX),
                1 => json!(i64::MIN),
                _ => json!(rng.below(9) as i64 - 4),
            },
            "at" => {
                let secs = BASE + 60 * rng.below(10) as i64 - 60;
                if rng.chance(50) {
                    json!(secs)
                } else {
                    json!(rfc3339(secs))
                }
            }
            _ => json!(*rng.pick(&XS)),
        }
    };
    let (a, b) = (v(rng), v(rng));
    range(field, bound(rng, a), bound(rng, b))
}

fn random_leaf(rng: &mut Rng, sort_field: Option<&str>) -> Filter {
    // The sort field's range, often: the walk's bounds.
    if let Some(f) = sort_field {
        if ["n", "at", "x"].contains(&f) && rng.chance(35) {
            return random_range(rng, f);
        }
    }
    match rng.below(9) {
        0 | 1 => {
            let pool = ["alpha", "ALPHA", "Alpha", "beta", "beta-x", "gamma", "delta", "epsilon", "nope"];
            let vals: Vec<Json> = (0..=rng.below(3)).map(|_| json!(rng.pick(&pool))).collect();
            terms("kind", &vals)
        }
        2 => {
            let pool = ["a", "al", "ALP", "b", "beta", "beta-", "g", "d", "", "z", "e"];
            Filter::Prefix { field: "kind".into(), prefix: (*rng.pick(&pool)).to_owned() }
        }
        3 => {
            let pool = ["elan", "ÉLAN", "Élan", "uber", "Über", "zeta ω", "ZETA Ω", "angstrom", "x"];
            let vals: Vec<Json> = (0..=rng.below(2)).map(|_| json!(rng.pick(&pool))).collect();
            terms("tag", &vals)
        }
        4 => {
            let pool = ["e", "É", "u", "Ü", "z", "a", ""];
            Filter::Prefix { field: "tag".into(), prefix: (*rng.pick(&pool)).to_owned() }
        }
        5 => {
            let f = ["n", "at", "x"][rng.below(3) as usize];
            random_range(rng, f)
        }
        6 => Filter::Exists { field: (*rng.pick(&["kind", "tag", "n", "at", "x"])).to_owned() },
        7 => {
            let vals: Vec<Json> = (0..=rng.below(2)).map(|_| json!(rng.below(9) as i64 - 4)).collect();
            terms("n", &vals)
        }
        _ => Filter::Not(Box::new(terms("kind", &[json!(*rng.pick(&["alpha", "beta", "delta"]))]))),
    }
}

fn random_filter(rng: &mut Rng, sort_field: Option<&str>, depth: u32) -> Filter {
    if depth >= 2 || rng.chance(45) {
        return random_leaf(rng, sort_field);
    }
    let n = rng.below(4) + 1;
    let parts: Vec<Filter> = (0..n).map(|_| random_filter(rng, sort_field, depth + 1)).collect();
    match rng.below(5) {
        0 | 1 => Filter::And(parts),
        2 => Filter::Or(parts),
        3 => Filter::Not(Box::new(random_filter(rng, sort_field, depth + 1))),
        _ => {
            // Several ranges on the sort field in one `and`, with others.
            let f = sort_field.unwrap_or("n");
            let f = if ["n", "at", "x"].contains(&f) { f } else { "n" };
            let mut v: Vec<Filter> = (0..=rng.below(2)).map(|_| random_range(rng, f)).collect();
            v.extend(parts);
            v.insert(rng.below(v.len() as u64 + 1) as usize, random_range(rng, f));
            Filter::And(v)
        }
    }
}

fn random_query(rng: &mut Rng) -> Query {
    let first = *rng.pick(&["n", "at", "x", "n", "at", "x", "kind", "none"]);
    let mut sort = Vec::new();
    if first != "none" {
        sort.push(s(first, rng.chance(50)));
        if rng.chance(40) {
            let f = *rng.pick(&["n", "x", "kind", "tag", "at"]);
            sort.push(s(f, rng.chance(50)));
        }
    }
    let sort_field = sort.first().map(|k: &SortKey| k.field.clone());
    Query {
        filter: if rng.chance(10) { Filter::All } else { random_filter(rng, sort_field.as_deref(), 0) },
        sort,
        limit: *rng.pick(&[1, 2, 3, 4, 5, 6, 7, 1000]),
        collapse: rng.chance(8).then(|| "kind".to_owned()),
        total: rng.chance(15),
        ..Query::default()
    }
}

// ----------------------------------------------------------------- tests

#[test]
fn random_queries_on_dense_terms_and_range_walks_match_the_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let current = load(&db, &mut rng, 1500);
    let records = values(&current);
    assert_eq!(db.collection("ev").unwrap().len(), records.len());
    for i in 0..700 {
        let q = random_query(&mut rng);
        let want = oracle(&records, &q);
        let got = page_all(&db, "ev", &q, &current);
        assert_eq!(got, want, "query {i}: {q:?}");
        if q.total && q.collapse.is_none() {
            let r = db.collection("ev").unwrap().query(&Query { limit: 0, ..q.clone() }).unwrap();
            assert_eq!(r.total, Some(want.len() as u64), "query {i}: {q:?}");
        }
    }
}

#[test]
fn frequent_and_rare_terms_mixed_match_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.put_collection("ev", &schema()).unwrap();
    let mut current = BTreeMap::new();
    // 640 rows: "common" in 320 (dense), "edge" in exactly 20 (20 * 32 =
    // 640: dense by a hair), "under" in 19 (not dense), "rare" in 1.
    let recs: Vec<Json> = (0..640)
        .map(|i| {
            let kind = if i == 333 {
                json!("RARE")
            } else if i % 32 == 5 {
                json!(["Edge", "common"])
            } else if i % 32 == 7 && i < 19 * 32 {
                json!("under")
            } else if i % 2 == 0 {
                json!("Common")
            } else {
                json!("other")
            };
            json!({"id": format!("r{i:04}"), "kind": kind, "n": i % 10, "tag": if i % 3 == 0 { "Élan" } else { "ÉLAN-x" }})
        })
        .collect();
    put_all(&db, "ev", &mut current, recs);
    let records = values(&current);
    let c = db.collection("ev").unwrap();
    let check = |f: Filter, sort: Vec<SortKey>, expect_some: bool| {
        for limit in [1, 3, 7, 10_000] {
            let q = Query { filter: f.clone(), sort: sort.clone(), limit, ..Query::default() };
            let want = oracle(&records, &q);
            assert_eq!(!want.is_empty(), expect_some, "{f:?}: the oracle's answer is not what the test meant");
            assert_eq!(page_all(&db, "ev", &q, &current), want, "{q:?}");
        }
        let q = Query { filter: f.clone(), total: true, limit: 0, ..Query::default() };
        let want = oracle(&records, &q).len() as u64;
        assert_eq!(c.query(&q).unwrap().total, Some(want), "total of {f:?}");
        let mut ids = c.ids_where(&f);
        ids.sort();
        let mut want = oracle(&records, &Query { filter: f.clone(), ..Query::default() });
        want.sort();
        assert_eq!(ids, want, "ids_where {f:?}");
    };
    let kind = |v: &[&str]| terms("kind", &v.iter().map(|s| json!(s)).collect::<Vec<_>>());
    for sort in [vec![], vec![s("n", false)], vec![s("n", true), s("kind", false)]] {
        check(kind(&["common", "rare"]), sort.clone(), true);
        check(kind(&["RARE"]), sort.clone(), true);
        check(kind(&["Common", "edge"]), sort.clone(), true);
        check(kind(&["edge"]), sort.clone(), true);
        check(kind(&["under"]), sort.clone(), true);
        check(kind(&["edge", "under"]), sort.clone(), true);
        check(kind(&["common", "nope"]), sort.clone(), true);
        check(kind(&["nope"]), sort.clone(), false);
        check(kind(&[]), sort.clone(), false);
        check(Filter::Not(Box::new(kind(&["COMMON"]))), sort.clone(), true);
        check(Filter::Not(Box::new(kind(&["edge", "rare"]))), sort.clone(), true);
        check(Filter::Not(Box::new(kind(&["common", "other", "rare", "under"]))), sort.clone(), false);
        check(Filter::Prefix { field: "kind".into(), prefix: "CO".into() }, sort.clone(), true);
        check(Filter::Prefix { field: "kind".into(), prefix: String::new() }, sort.clone(), true);
        check(Filter::Prefix { field: "kind".into(), prefix: "r".into() }, sort.clone(), true);
        check(Filter::Prefix { field: "kind".into(), prefix: "u".into() }, sort.clone(), true);
        check(Filter::Not(Box::new(Filter::Prefix { field: "kind".into(), prefix: "o".into() })), sort.clone(), true);
        check(terms("tag", &[json!("elan")]), sort.clone(), true);
        check(terms("tag", &[json!("ELAN")]), sort.clone(), true);
        check(Filter::Prefix { field: "tag".into(), prefix: "ÉL".into() }, sort.clone(), true);
        check(
            Filter::And(vec![
                kind(&["common"]),
                Filter::Not(Box::new(kind(&["edge"]))),
                range("n", Included(json!(3)), Unbounded),
            ]),
            sort.clone(),
            true,
        );
        check(Filter::Or(vec![kind(&["rare"]), kind(&["under"]), terms("tag", &[json!("Élan")])]), sort.clone(), true);
    }
    // The same column after writes that make "edge" sparse and "rare"
    // dense: each version has its own sets.
    let more: Vec<Json> = (0..100)
        .map(|i| json!({"id": format!("s{i:04}"), "kind": if i < 40 { "rare" } else { "other" }, "n": i % 10}))
        .collect();
    let old = db.collection("ev").unwrap();
    let old_records = records.clone();
    put_all(&db, "ev", &mut current, more);
    let records = values(&current);
    for f in [kind(&["edge"]), kind(&["rare"]), kind(&["rare", "edge"]), Filter::Not(Box::new(kind(&["rare"])))] {
        let q = Query { filter: f.clone(), limit: 10_000, ..Query::default() };
        let got: Vec<String> = db.collection("ev").unwrap().query(&q).unwrap().hits.into_iter().map(|h| h.id).collect();
        assert_eq!(got, oracle(&records, &q), "new version {f:?}");
        let got: Vec<String> = old.query(&q).unwrap().hits.into_iter().map(|h| h.id).collect();
        assert_eq!(got, oracle(&old_records, &q), "old version {f:?}");
    }
}

#[test]
fn several_ranges_on_the_sort_field_and_ranges_under_or_and_not() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.put_collection("ev", &schema()).unwrap();
    let mut current = BTreeMap::new();
    let recs: Vec<Json> = (0..400)
        .map(|i| {
            let mut r =
                json!({"id": format!("w{:03}", (i * 37) % 400), "kind": if i % 5 == 0 { "alpha" } else { "beta" }});
            if i % 9 != 0 {
                r["n"] = json!(i % 10);
                r["at"] = if i % 2 == 0 { json!(BASE + 60 * (i % 10)) } else { json!(rfc3339(BASE + 60 * (i % 10))) };
            }
            r
        })
        .collect();
    put_all(&db, "ev", &mut current, recs);
    let records = values(&current);
    let at = |k: i64| json!(BASE + 60 * k);
    let ats = |k: i64| json!(rfc3339(BASE + 60 * k));
    let mut filters = vec![
        Filter::And(vec![
            range("n", Included(json!(2)), Unbounded),
            range("n", Unbounded, Excluded(json!(7))),
            range("n", Included(json!(4)), Unbounded),
        ]),
        Filter::And(vec![range("n", Unbounded, Excluded(json!(7))), range("n", Included(json!(4)), Unbounded)]),
        Filter::And(vec![range("n", Included(json!(5)), Unbounded), range("n", Unbounded, Excluded(json!(3)))]),
        Filter::And(vec![
            terms("kind", &[json!("alpha")]),
            range("n", Excluded(json!(1)), Included(json!(8))),
            range("n", Excluded(json!(2)), Excluded(json!(8))),
        ]),
        Filter::And(vec![range("n", Included(json!(3)), Included(json!(3))), terms("n", &[json!(3), json!(4)])]),
        Filter::And(vec![range("n", Included(json!(9)), Included(json!(2)))]),
        Filter::And(vec![range("n", Excluded(json!(i64::MAX)), Unbounded), range("n", Included(json!(0)), Unbounded)]),
        Filter::And(vec![range("n", Included(json!(i64::MIN)), Included(json!(i64::MAX)))]),
        range("n", Unbounded, Excluded(json!(i64::MIN))),
        range("n", Included(json!(2)), Excluded(json!(6))),
        Filter::Or(vec![range("n", Included(json!(8)), Unbounded), range("n", Unbounded, Excluded(json!(1)))]),
        Filter::Not(Box::new(range("n", Included(json!(3)), Unbounded))),
        Filter::And(vec![
            Filter::Not(Box::new(range("n", Included(json!(3)), Unbounded))),
            range("n", Included(json!(1)), Unbounded),
        ]),
        Filter::And(vec![
            Filter::And(vec![range("n", Included(json!(3)), Unbounded)]),
            range("n", Unbounded, Included(json!(5))),
        ]),
        Filter::And(vec![range("n", Included(json!(2)), Unbounded), Filter::Exists { field: "n".into() }]),
        Filter::And(vec![]),
    ];
    // The same on the date field, bounds in both forms.
    filters.extend([
        Filter::And(vec![
            range("at", Included(at(2)), Unbounded),
            range("at", Unbounded, Excluded(ats(7))),
            range("at", Included(ats(4)), Unbounded),
        ]),
        Filter::And(vec![
            range("at", Excluded(ats(1)), Included(at(8))),
            range("at", Excluded(at(2)), Excluded(ats(8))),
        ]),
        Filter::Or(vec![range("at", Included(at(8)), Unbounded), range("at", Unbounded, Excluded(ats(1)))]),
        Filter::Not(Box::new(range("at", Included(ats(3)), Unbounded))),
        Filter::And(vec![
            range("at", Included(json!(rfc3339(BASE + 60 * 3 + 1))), Unbounded),
            range("n", Unbounded, Included(json!(5))),
        ]),
    ]);
    for f in &filters {
        for field in ["n", "at"] {
            for desc in [false, true] {
                for second in [None, Some(s("kind", true)), Some(s("n", !desc))] {
                    let mut sort = vec![s(field, desc)];
                    sort.extend(second.clone());
                    for limit in 1..=7 {
                        let q = Query { filter: f.clone(), sort: sort.clone(), limit, ..Query::default() };
                        let want = oracle(&records, &q);
                        assert_eq!(page_all(&db, "ev", &q, &current), want, "{q:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn float_sort_orders_negatives_zeros_and_missing_values() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.put_collection("ev", &schema()).unwrap();
    let mut current = BTreeMap::new();
    let xs = [
        json!(-0.0),
        json!(0.0),
        json!(0),
        json!(-1),
        json!(-1.5),
        json!(2.5),
        json!(1e-300),
        json!(-1e-300),
        json!(-1e300),
        json!(1e300),
        Json::Null,
    ];
    let recs: Vec<Json> = (0..120)
        .map(|i| {
            let mut r = json!({"id": format!("f{:03}", (i * 53) % 120), "n": i % 3});
            if !xs[i % xs.len()].is_null() {
                r["x"] = xs[i % xs.len()].clone();
            }
            r
        })
        .collect();
    put_all(&db, "ev", &mut current, recs);
    let records = values(&current);
    // -0.0 is kept as written.
    let neg = records.iter().find(|r| r.x.is_some_and(|x| x == 0.0 && x.is_sign_negative())).expect("a -0.0 record");
    let got = db.collection("ev").unwrap().get(&neg.id).unwrap().unwrap();
    assert!(got["x"].as_f64().unwrap().is_sign_negative(), "{got}");
    for f in [
        Filter::All,
        range("x", Included(json!(0.0)), Unbounded),
        range("x", Unbounded, Excluded(json!(0.0))),
        range("x", Included(json!(-0.0)), Included(json!(0.0))),
        Filter::And(vec![range("x", Excluded(json!(-2.0)), Unbounded), range("x", Unbounded, Included(json!(1e-300)))]),
        terms("n", &[json!(1)]),
        // A term on a float is numeric equality: 0 is also -0.0, as a range
        // [0, 0] says.
        terms("x", &[json!(0)]),
        terms("x", &[json!(-0.0), json!(2.5)]),
        Filter::Not(Box::new(Filter::Exists { field: "x".into() })),
    ] {
        for desc in [false, true] {
            for sort in [vec![s("x", desc)], vec![s("x", desc), s("n", !desc)], vec![s("n", desc), s("x", !desc)]] {
                for limit in [1, 2, 3, 5, 7, 1000] {
                    let q = Query { filter: f.clone(), sort: sort.clone(), limit, ..Query::default() };
                    assert_eq!(page_all(&db, "ev", &q, &current), oracle(&records, &q), "{q:?}");
                }
            }
        }
    }
}

/// Pages `q` while writing between the first pages: the pages must be the
/// version the first page was read from, each hit once.
fn page_across_writes(db: &Database, q: &Query, current: &mut BTreeMap<String, Rec>, rng: &mut Rng, writes: usize) {
    let before = current.clone();
    let want = oracle(&values(&before), q);
    let mut got = Vec::new();
    let mut q2 = q.clone();
    let mut written = 0;
    let mut version = None;
    loop {
        let c = db.collection_for("ev", q2.cursor.as_deref()).unwrap();
        let r = c.query(&q2).unwrap_or_else(|e| panic!("{q2:?}: {e}"));
        assert_eq!(*version.get_or_insert(r.version), r.version, "every page from one version");
        for h in r.hits {
            assert_eq!(&h.doc, &before[&h.id].json, "the doc of {} as of the first page", h.id);
            got.push(h.id);
        }
        if written < writes {
            written += 1;
            // Updates that move records in the order, deletes, new
            // records with the same values: none may show.
            let ids: Vec<String> = current.keys().cloned().collect();
            let victim = ids[rng.below(ids.len() as u64) as usize].clone();
            let moved = ids[rng.below(ids.len() as u64) as usize].clone();
            let mut moved_rec = current[&moved].json.clone();
            moved_rec["n"] = json!(rng.below(7) as i64 - 3);
            moved_rec["x"] = json!(*rng.pick(&XS));
            let new: Vec<Json> = (0..3)
                .map(|i| {
                    let mut r = random_record(rng, 10_000 + written * 10 + i);
                    r["id"] = json!(format!("new{written}-{i}"));
                    r
                })
                .collect();
            db.write_collection("ev", |w| {
                w.delete(&victim)?;
                w.put_json(&moved_rec)?;
                for r in &new {
                    w.put_json(r)?;
                }
                Ok(())
            })
            .unwrap();
            current.remove(&victim);
            let m = Rec::of(moved_rec);
            current.insert(m.id.clone(), m);
            for r in new {
                let r = Rec::of(r);
                current.insert(r.id.clone(), r);
            }
        }
        match r.next_cursor {
            Some(c) => q2.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(got, want, "{q:?}");
}

#[test]
fn cursors_over_many_equal_values_keep_their_version_across_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut rng = Rng(0xfeed_beef);
    let mut current = load(&db, &mut rng, 150);
    let filters = [
        Filter::All,
        range("n", Included(json!(-2)), Included(json!(2))),
        Filter::And(vec![range("n", Included(json!(-2)), Unbounded), terms("kind", &[json!("alpha"), json!("delta")])]),
        Filter::And(vec![
            range("at", Included(json!(BASE + 60)), Unbounded),
            range("at", Unbounded, Excluded(json!(BASE + 360))),
        ]),
        range("x", Excluded(json!(-1.0)), Unbounded),
        Filter::Not(Box::new(terms("kind", &[json!("alpha")]))),
    ];
    for f in &filters {
        for field in ["n", "at", "x"] {
            for desc in [false, true] {
                for limit in 1..=7 {
                    let q = Query { filter: f.clone(), sort: vec![s(field, desc)], limit, ..Query::default() };
                    // Three writes: fewer than the versions kept.
                    page_across_writes(&db, &q, &mut current, &mut rng, 3);
                }
            }
        }
    }
    // And the newest version answers as the oracle says for it.
    let records = values(&current);
    let q = Query { sort: vec![s("n", true), s("x", false)], limit: 10_000, ..Query::default() };
    assert_eq!(page_all(&db, "ev", &q, &current), oracle(&records, &q));
}

#[test]
fn ids_and_docs_with_quotes_escapes_and_unicode_come_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.put_collection("ev", &schema()).unwrap();
    let ids = [
        "plain",
        "with \"quotes\"",
        "back\\slash",
        "tab\tnew\nline",
        "ctrl\u{1}\u{1f}",
        "é/ü?#&%20",
        "emoji 😀",
        "\u{2028}\u{2029}",
        "</script>",
        "a",
        "A",
        "ü",
        "u\u{308}",
    ];
    let mut current = BTreeMap::new();
    let recs: Vec<Json> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            json!({"id": id, "kind": format!("K \"{i}\" \\ é"), "n": i, "tag": "Élan",
                   "body": {"text": format!("{id} — \"{i}\"\u{0}\\"), "list": [1, -0.0, 1e300, null, {"k": "\u{7f}"}]}})
        })
        .collect();
    put_all(&db, "ev", &mut current, recs);
    let c = db.collection("ev").unwrap();
    for id in ids {
        assert_eq!(c.get(id).unwrap().as_ref(), Some(&current[id].json), "get {id:?}");
    }
    assert_eq!(c.get("nope").unwrap(), None);
    assert_eq!(c.get("").unwrap(), None);
    assert_eq!(c.get("émoji").unwrap(), None);
    for sort in [vec![], vec![s("n", true)], vec![s("kind", false)]] {
        for limit in [1, 4, 100] {
            let q = Query { sort: sort.clone(), limit, ..Query::default() };
            let got = page_all(&db, "ev", &q, &current);
            assert_eq!(got, oracle(&values(&current), &q));
        }
    }
    // The raw hits are the stored JSON text, which parses to the record.
    let q = Query { sort: vec![s("n", false)], limit: 100, ..Query::default() };
    let (_, raw) = c.query_raw(&q).unwrap();
    assert_eq!(raw.len(), ids.len());
    for (h, id) in raw.iter().zip(ids) {
        assert_eq!(h.id, id);
        let doc: Json = serde_json::from_slice(&h.json).unwrap();
        assert_eq!(doc, current[id].json);
    }
    // Projections keep exactly the fields asked for.
    let q = Query {
        sort: vec![s("n", false)],
        limit: 100,
        fields: Some(vec!["body".into(), "id".into(), "x".into()]),
        ..Query::default()
    };
    for h in c.query(&q).unwrap().hits {
        let r = &current[&h.id].json;
        assert_eq!(h.doc, json!({"id": r["id"], "body": r["body"]}), "projection of {:?}", h.id);
    }
    let (_, raw) = c.query_raw(&q).unwrap();
    for h in &raw {
        let doc: Json = serde_json::from_slice(&h.json).unwrap();
        assert_eq!(doc, json!({"id": h.id, "body": current[h.id].json["body"]}));
    }
}

#[test]
fn get_after_delete_and_replace_and_old_versions_keep_their_records() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.put_collection("ev", &schema()).unwrap();
    let mut current = BTreeMap::new();
    let recs: Vec<Json> = (0..50).map(|i| json!({"id": format!("g{i:02}"), "n": i, "kind": "v1"})).collect();
    put_all(&db, "ev", &mut current, recs);
    let v1 = db.collection("ev").unwrap();
    let v1_records = current.clone();
    // Delete one, replace one with a longer and one with a shorter doc.
    db.write_collection("ev", |w| {
        assert!(w.delete("g10")?);
        w.put_json(json!({"id": "g20", "n": -5, "kind": "v2", "body": {"long": "x".repeat(5000)}}))?;
        w.put_json(json!({"id": "g30"}))
    })
    .unwrap();
    let v2 = db.collection("ev").unwrap();
    assert_eq!(v2.get("g10").unwrap(), None);
    assert_eq!(v2.get("g20").unwrap().unwrap()["body"]["long"].as_str().unwrap().len(), 5000);
    assert_eq!(v2.get("g30").unwrap(), Some(json!({"id": "g30"})));
    assert_eq!(v2.get("g31").unwrap(), Some(json!({"id": "g31", "n": 31, "kind": "v1"})));
    // The version read before the write still answers as it was.
    for (id, r) in &v1_records {
        assert_eq!(v1.get(id).unwrap().as_ref(), Some(&r.json), "old version: {id}");
    }
    let q = Query { sort: vec![s("n", false)], limit: 100, ..Query::default() };
    let old: Vec<Json> = v1.query(&q).unwrap().hits.into_iter().map(|h| h.doc).collect();
    assert_eq!(old, (0..50).map(|i| v1_records[&format!("g{i:02}")].json.clone()).collect::<Vec<_>>());
    let new: Vec<String> = v2.query(&q).unwrap().hits.into_iter().map(|h| h.id).collect();
    assert_eq!(new[0], "g20");
    assert!(!new.contains(&"g10".to_owned()));
    assert_eq!(new.last().map(String::as_str), Some("g30"), "no n: last");
    // Re-put the deleted id with other content; many later writes; the
    // handle on v1 still reads v1 (it holds its own copy).
    db.write_collection("ev", |w| w.put_json(json!({"id": "g10", "n": 1000, "kind": "again"}))).unwrap();
    for i in 0..8 {
        db.write_collection("ev", |w| w.put_json(json!({"id": format!("z{i}")}))).unwrap();
    }
    let now = db.collection("ev").unwrap();
    assert_eq!(now.get("g10").unwrap(), Some(json!({"id": "g10", "n": 1000, "kind": "again"})));
    assert_eq!(v1.get("g10").unwrap(), Some(json!({"id": "g10", "n": 10, "kind": "v1"})));
    assert_eq!(v2.get("g10").unwrap(), None);
    let top = now.query(&Query { sort: vec![s("n", true)], limit: 1, ..Query::default() }).unwrap();
    assert_eq!(top.hits[0].doc, json!({"id": "g10", "n": 1000, "kind": "again"}));
}

#[test]
fn reopen_snapshot_and_restore_rebuild_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(77);
    let mut current = {
        let db = open(dir.path());
        let mut current = load(&db, &mut rng, 400);
        db.write_collection("ev", |w| {
            w.delete(current.keys().next().unwrap())?;
            Ok(())
        })
        .unwrap();
        let first = current.keys().next().unwrap().clone();
        current.remove(&first);
        let replaced = json!({"id": current.keys().nth(5).unwrap(), "kind": "replaced ✓", "n": 99});
        put_all(&db, "ev", &mut current, vec![replaced]);
        current
    };
    let db = open(dir.path());
    let c = db.collection("ev").unwrap();
    assert_eq!(c.len(), current.len());
    for (id, r) in &current {
        assert_eq!(c.get(id).unwrap().as_ref(), Some(&r.json), "after reopen: {id}");
    }
    let q = Query { sort: vec![s("x", true), s("n", false)], limit: 7, ..Query::default() };
    assert_eq!(page_all(&db, "ev", &q, &current), oracle(&values(&current), &q));

    let mut snap = Vec::new();
    db.create_snapshot(&mut snap).unwrap();
    let at_snapshot = current.clone();
    let held = db.collection("ev").unwrap();
    // Later changes, undone by the restore.
    let gone = current.keys().nth(3).unwrap().clone();
    db.write_collection("ev", |w| {
        w.delete(&gone)?;
        w.put_json(json!({"id": "after-snapshot", "n": 1}))
    })
    .unwrap();
    current.remove(&gone);
    let late = Rec::of(json!({"id": "after-snapshot", "n": 1}));
    current.insert(late.id.clone(), late);
    let cursor = db
        .collection("ev")
        .unwrap()
        .query(&Query { sort: vec![s("n", false)], limit: 2, ..Query::default() })
        .unwrap()
        .next_cursor
        .unwrap();
    db.restore_snapshot(&mut snap.as_slice()).unwrap();
    let c = db.collection("ev").unwrap();
    assert_eq!(c.len(), at_snapshot.len());
    assert_eq!(c.get("after-snapshot").unwrap(), None);
    for (id, r) in &at_snapshot {
        assert_eq!(c.get(id).unwrap().as_ref(), Some(&r.json), "after restore: {id}");
    }
    let q = Query { sort: vec![s("at", false)], limit: 5, ..Query::default() };
    assert_eq!(page_all(&db, "ev", &q, &at_snapshot), oracle(&values(&at_snapshot), &q));
    // A cursor of the version from before the restore goes on paging that
    // version (kept for cursors like any superseded one), exactly.
    let q = Query { sort: vec![s("n", false)], limit: 2, ..Query::default() };
    let want = oracle(&values(&current), &q);
    let rest = page_all(&db, "ev", &Query { cursor: Some(cursor), ..q.clone() }, &current);
    assert_eq!(rest, want[2..].to_vec(), "the pre-restore version, after its first page");
    // A handle taken before still reads its own version.
    for (id, r) in &at_snapshot {
        assert_eq!(held.get(id).unwrap().as_ref(), Some(&r.json), "held handle: {id}");
    }
    // Restored into another database.
    let other = tempfile::tempdir().unwrap();
    let db2 = open(other.path());
    db2.restore_snapshot(&mut snap.as_slice()).unwrap();
    let c2 = db2.collection("ev").unwrap();
    for (id, r) in &at_snapshot {
        assert_eq!(c2.get(id).unwrap().as_ref(), Some(&r.json), "other db: {id}");
    }
}

#[test]
fn a_schema_change_keeps_records_and_queries_right() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut rng = Rng(4242);
    let mut current = load(&db, &mut rng, 200);
    let q = Query { sort: vec![s("n", false)], limit: 3, ..Query::default() };
    let first = db.collection("ev").unwrap().query(&q).unwrap();
    let before = values(&current);
    let wider = schema()
        .field("extra", FieldSpec::new(FieldType::Integer))
        .field("label", FieldSpec { lowercase: true, ..FieldSpec::new(FieldType::Keyword) });
    assert!(!db.put_collection("ev", &wider).unwrap());
    let c = db.collection("ev").unwrap();
    assert_eq!(c.len(), current.len());
    for (id, r) in &current {
        assert_eq!(c.get(id).unwrap().as_ref(), Some(&r.json), "{id}");
    }
    // The cursor from before the change pages its own version to the end.
    let mut got: Vec<String> = first.hits.into_iter().map(|h| h.id).collect();
    let mut q2 = Query { cursor: first.next_cursor, ..q.clone() };
    while q2.cursor.is_some() {
        let r = db.collection_for("ev", q2.cursor.as_deref()).unwrap().query(&q2).unwrap();
        got.extend(r.hits.into_iter().map(|h| h.id));
        q2.cursor = r.next_cursor;
    }
    assert_eq!(got, oracle(&before, &q));
    // Records with the new fields, and sorts on them (missing last).
    let ids: Vec<String> = current.keys().take(30).cloned().collect();
    let updated: Vec<Json> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let mut r = current[id].json.clone();
            r["extra"] = json!(i as i64 % 4);
            r["label"] = json!(if i % 2 == 0 { "Even" } else { "odd" });
            r
        })
        .collect();
    put_all(&db, "ev", &mut current, updated);
    let c = db.collection("ev").unwrap();
    for desc in [false, true] {
        let q = Query { sort: vec![s("extra", desc)], limit: 10_000, ..Query::default() };
        let got: Vec<String> = c.query(&q).unwrap().hits.into_iter().map(|h| h.id).collect();
        let mut want: Vec<(Option<i64>, String)> =
            current.values().map(|r| (r.json.get("extra").and_then(Json::as_i64), r.id.clone())).collect();
        want.sort_by(|a, b| match (a.0, b.0) {
            (Some(x), Some(y)) => (if desc { y.cmp(&x) } else { x.cmp(&y) }).then(a.1.cmp(&b.1)),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => a.1.cmp(&b.1),
        });
        assert_eq!(got, want.into_iter().map(|w| w.1).collect::<Vec<_>>(), "sort on extra, desc {desc}");
    }
    let q = Query { filter: terms("label", &[json!("EVEN")]), limit: 100, ..Query::default() };
    let got: Vec<String> = c.query(&q).unwrap().hits.into_iter().map(|h| h.id).collect();
    let want: Vec<String> = ids.iter().enumerate().filter(|(i, _)| i % 2 == 0).map(|(_, id)| id.clone()).collect();
    assert_eq!(got, want);
    let q = Query {
        filter: range("extra", Included(json!(1)), Included(json!(2))),
        sort: vec![s("extra", true)],
        limit: 4,
        ..Query::default()
    };
    let mut got = Vec::new();
    let mut q2 = q.clone();
    loop {
        let r = db.collection_for("ev", q2.cursor.as_deref()).unwrap().query(&q2).unwrap();
        got.extend(r.hits.into_iter().map(|h| h.doc["extra"].as_i64().unwrap()));
        match r.next_cursor {
            Some(c) => q2.cursor = Some(c),
            None => break,
        }
    }
    let mut want: Vec<i64> = (0..30).map(|i| i % 4).filter(|e| (1..=2).contains(e)).collect();
    want.sort_by(|a, b| b.cmp(a));
    assert_eq!(got, want);
}

#[test]
fn empty_and_one_record_collections() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.put_collection("ev", &schema()).unwrap();
    let queries = || {
        let mut v = Vec::new();
        for sort in [
            vec![],
            vec![s("n", false)],
            vec![s("n", true)],
            vec![s("x", true)],
            vec![s("at", false)],
            vec![s("kind", false)],
        ] {
            for filter in [
                Filter::All,
                terms("kind", &[json!("ONLY")]),
                Filter::Not(Box::new(terms("kind", &[json!("only")]))),
                Filter::Prefix { field: "kind".into(), prefix: "o".into() },
                range("n", Included(json!(1)), Unbounded),
                range("n", Unbounded, Excluded(json!(1))),
                Filter::And(vec![range("n", Included(json!(0)), Unbounded), range("n", Unbounded, Included(json!(1)))]),
                range("x", Included(json!(-0.0)), Unbounded),
            ] {
                for limit in [0, 1, 2] {
                    v.push(Query {
                        filter: filter.clone(),
                        sort: sort.clone(),
                        limit,
                        total: limit == 2,
                        ..Query::default()
                    });
                }
            }
        }
        v
    };
    let check = |current: &BTreeMap<String, Rec>| {
        let records = values(current);
        let c = db.collection("ev").unwrap();
        assert_eq!(c.len(), records.len());
        for q in queries() {
            let r = c.query(&q).unwrap();
            let want = oracle(&records, &q);
            let got: Vec<String> = r.hits.iter().map(|h| h.id.clone()).collect();
            assert_eq!(got, want.iter().take(q.limit).cloned().collect::<Vec<_>>(), "{q:?}");
            if q.limit > 0 {
                assert_eq!(r.next_cursor.is_some(), want.len() > q.limit, "{q:?}: a cursor only when more follow");
            }
            if q.total {
                assert_eq!(r.total, Some(want.len() as u64), "{q:?}");
            }
            for h in &r.hits {
                assert_eq!(h.doc, current[&h.id].json);
            }
        }
        assert_eq!(c.get("one").unwrap().as_ref(), current.get("one").map(|r| &r.json));
    };
    let mut current = BTreeMap::new();
    check(&current);
    put_all(&db, "ev", &mut current, vec![json!({"id": "one", "kind": "Only", "n": 1, "x": -0.0, "at": BASE})]);
    check(&current);
    db.write_collection("ev", |w| w.delete("one")).unwrap();
    current.clear();
    check(&current);
    // One record without any indexed value.
    put_all(&db, "ev", &mut current, vec![json!({"id": "one"})]);
    check(&current);
}

#[test]
fn records_larger_than_the_write_chunk_come_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut current = BTreeMap::new();
    let big = |tag: &str, len: usize| -> String {
        // Multi-byte characters and escapes throughout, so that a cut in
        // the wrong place shows.
        let unit = format!("{tag}é\"\\✓");
        unit.repeat(len / unit.len() + 1)
    };
    {
        let db = open(dir.path());
        db.put_collection("ev", &schema()).unwrap();
        let mut recs = vec![
            json!({"id": "huge", "n": 1, "body": {"s": big("H", 3 << 20)}}),
            json!({"id": "just-under", "n": 2, "body": {"s": big("U", (1 << 20) - 64)}}),
            json!({"id": "just-over", "n": 3, "body": {"s": big("O", (1 << 20) + 64)}}),
            json!({"id": "tiny", "n": 4}),
        ];
        // Many medium records: several megabytes in all, over many chunks.
        for i in 0..60 {
            recs.push(json!({"id": format!("m{i:03}"), "n": 10 + i, "kind": if i % 2 == 0 { "a" } else { "b" }, "body": {"s": big(&format!("m{i}"), 97_000 + i * 131)}}));
        }
        put_all(&db, "ev", &mut current, recs);
        let c = db.collection("ev").unwrap();
        for (id, r) in &current {
            assert_eq!(c.get(id).unwrap().as_ref(), Some(&r.json), "{id}");
        }
        for q in [
            Query { sort: vec![s("n", false)], limit: 7, ..Query::default() },
            Query { sort: vec![s("n", true)], limit: 3, ..Query::default() },
            Query { filter: terms("kind", &[json!("b")]), limit: 5, ..Query::default() },
        ] {
            assert_eq!(page_all(&db, "ev", &q, &current), oracle(&values(&current), &q));
        }
        // Replace the huge one with a small one and the tiny one with a huge one.
        put_all(
            &db,
            "ev",
            &mut current,
            vec![json!({"id": "huge", "n": 1}), json!({"id": "tiny", "n": 4, "body": {"s": big("T", 2 << 20)}})],
        );
    }
    let db = open(dir.path());
    let c = db.collection("ev").unwrap();
    for (id, r) in &current {
        assert_eq!(c.get(id).unwrap().as_ref(), Some(&r.json), "after reopen: {id}");
    }
    let q = Query { sort: vec![s("n", true)], limit: 2, ..Query::default() };
    assert_eq!(page_all(&db, "ev", &q, &current), oracle(&values(&current), &q));
}

#[test]
fn a_walk_with_collapse_and_cursor_keeps_the_first_of_each_value() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut rng = Rng(31337);
    let current = load(&db, &mut rng, 600);
    let records = values(&current);
    for field in ["n", "at", "x"] {
        for desc in [false, true] {
            for f in [
                Filter::All,
                random_range(&mut rng, field),
                Filter::And(vec![random_range(&mut rng, field), random_range(&mut rng, field)]),
            ] {
                for limit in [1, 2, 3] {
                    let q = Query {
                        filter: f.clone(),
                        sort: vec![s(field, desc)],
                        limit,
                        collapse: Some("kind".into()),
                        ..Query::default()
                    };
                    assert_eq!(page_all(&db, "ev", &q, &current), oracle(&records, &q), "{q:?}");
                }
            }
        }
    }
}

#[test]
fn readers_paging_while_a_writer_commits_see_one_version_each() {
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(open(dir.path()));
    let mut rng = Rng(0xabad_1dea);
    let current = load(&db, &mut rng, 300);
    // Every version's records, by generation.
    let versions: Arc<Mutex<BTreeMap<u64, BTreeMap<String, Rec>>>> = Arc::new(Mutex::new(BTreeMap::new()));
    versions.lock().unwrap().insert(db.collection("ev").unwrap().version(), current.clone());
    let writer = {
        let (db, versions) = (db.clone(), versions.clone());
        let mut current = current;
        std::thread::spawn(move || {
            let mut rng = Rng(99);
            for w in 0..40 {
                let ids: Vec<String> = current.keys().cloned().collect();
                let victim = ids[rng.below(ids.len() as u64) as usize].clone();
                let mut r = random_record(&mut rng, 20_000 + w);
                r["id"] = json!(format!("w{w:03}"));
                // Hold the lock across the commit: a reader that sees the
                // new version finds its records here.
                let mut v = versions.lock().unwrap();
                let ((), c) = db
                    .write_collection("ev", |wr| {
                        wr.delete(&victim)?;
                        wr.put_json(&r)
                    })
                    .unwrap();
                current.remove(&victim);
                let rec = Rec::of(r);
                current.insert(rec.id.clone(), rec);
                v.insert(c.generation, current.clone());
                drop(v);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        })
    };
    let readers: Vec<_> = (0..2u64)
        .map(|t| {
            let (db, versions) = (db.clone(), versions.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(1000 + t);
                let mut checked = 0;
                while checked < 40 {
                    let q = random_query(&mut rng);
                    let mut q2 = q.clone();
                    let mut got = Vec::new();
                    let mut version = None;
                    let done = loop {
                        let c = db.collection_for("ev", q2.cursor.as_deref()).unwrap();
                        let r = match c.query(&q2) {
                            Ok(r) => r,
                            Err(CollectionError::CursorExpired) => break false,
                            Err(e) => panic!("{q2:?}: {e}"),
                        };
                        assert_eq!(*version.get_or_insert(r.version), r.version);
                        got.extend(r.hits.into_iter().map(|h| (h.id, h.doc)));
                        match r.next_cursor {
                            Some(c) => q2.cursor = Some(c),
                            None => break true,
                        }
                    };
                    if !done {
                        continue;
                    }
                    let records = versions.lock().unwrap().get(&version.unwrap()).cloned().expect("a known version");
                    let want = oracle(&values(&records), &q);
                    assert_eq!(got.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(), want, "{q:?}");
                    for (id, doc) in &got {
                        assert_eq!(doc, &records[id].json);
                    }
                    checked += 1;
                }
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
}
