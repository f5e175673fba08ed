//! The collections' HTTP answers at their edges, with raw hits
//! and inline ("quick") queries: the JSON built by hand must be valid and
//! hold the exact ids and records, on the quick path and the blocking one,
//! in NDJSON streams, after writes (the answer cache), with the right
//! status codes for bad and expired cursors.

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;

use common::{enc, exchange, Server};
use serde_json::{json, Value};

const TOKEN: &str = "edge-token";

fn send(s: &Server, method: &str, target: &str, headers: &str, body: &[u8]) -> (u16, Vec<u8>) {
    common::send_authorized(&s.addr, TOKEN, method, target, headers, body)
}

/// A request whose answer must be JSON.
fn call(s: &Server, method: &str, target: &str, body: &Value) -> (u16, Value) {
    let (status, raw) = send(s, method, target, "Content-Type: application/json\r\n", body.to_string().as_bytes());
    let v = serde_json::from_slice(&raw).unwrap_or_else(|e| {
        panic!("{method} {target} {body}: the answer ({status}) is not JSON: {e}: {}", String::from_utf8_lossy(&raw))
    });
    (status, v)
}

fn query(s: &Server, body: &Value) -> (u16, Value) {
    call(s, "POST", "/collections/ev/query", body)
}

fn stream(s: &Server, body: &Value) -> Vec<Value> {
    let (status, raw) =
        send(s, "POST", "/collections/ev/query", "Accept: application/x-ndjson\r\n", body.to_string().as_bytes());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&raw));
    raw.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l)
                .unwrap_or_else(|e| panic!("an NDJSON line is not JSON ({e}): {}", String::from_utf8_lossy(l)))
        })
        .collect()
}

const SCHEMA: &str = r#"
primary_key = "id"
[fields]
id = { type = "keyword" }
kind = { type = "keyword", lowercase = true }
n = { type = "integer" }
x = { type = "float" }
at = { type = "date" }
body = { type = "json" }
"#;

fn server() -> Server {
    let s = Server::serve_with(tempfile::tempdir().unwrap(), &["--write-token", TOKEN]);
    let (status, body) = send(&s, "PUT", "/collections/ev", "", SCHEMA.as_bytes());
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    s
}

fn post(s: &Server, records: &[Value]) {
    let mut body = Vec::new();
    for r in records {
        body.extend_from_slice(r.to_string().as_bytes());
        body.push(b'\n');
    }
    let (status, raw) = send(s, "POST", "/collections/ev/documents", "Content-Type: application/x-ndjson\r\n", &body);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&raw));
}

fn ids(v: &Value) -> Vec<String> {
    v["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("no hits in {v}"))
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Pages `body` to its end; (ids, docs).
fn page_all(s: &Server, body: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut body = body.clone();
    for _ in 0..10_000 {
        let (status, v) = query(s, &body);
        assert_eq!(status, 200, "{body}: {v}");
        for h in v["hits"].as_array().unwrap() {
            out.push((h["id"].as_str().unwrap().to_owned(), h["doc"].clone()));
        }
        if v["next_cursor"].is_null() {
            return out;
        }
        body["cursor"] = v["next_cursor"].clone();
    }
    panic!("the cursor never ended");
}

const IDS: [&str; 12] = [
    "plain",
    "with \"quotes\"",
    "back\\slash",
    "tab\tnew\nline",
    "ctrl\u{1}\u{1f}",
    "é/ü?#&%20+",
    "emoji 😀",
    "\u{2028}\u{2029}",
    "</script>",
    "a b",
    "ü",
    "u\u{308}",
];

fn tricky_records() -> Vec<Value> {
    IDS.iter()
        .enumerate()
        .map(|(i, id)| {
            json!({"id": id, "kind": format!("K \"{i}\" \\ é\u{0}"), "n": i, "x": if i % 2 == 0 { json!(-0.5 * i as f64) } else { json!(null) },
                   "body": {"text": format!("{id} — \"{i}\"\\ \u{7f}"), "list": [1, -0.0, 1e300, null, {"k": "\u{2028}"}]}})
        })
        .collect()
}

/// Records by id, as sent (and stored).
fn by_id(records: &[Value]) -> BTreeMap<String, Value> {
    records.iter().map(|r| (r["id"].as_str().unwrap().to_owned(), r.clone())).collect()
}

#[test]
fn ids_and_docs_come_back_exact_on_the_quick_and_the_blocking_path() {
    let s = server();
    let records = tricky_records();
    post(&s, &records);
    let want = by_id(&records);
    let mut sorted_ids: Vec<String> = want.keys().cloned().collect();
    sorted_ids.sort();
    let by_n: Vec<String> = IDS.iter().map(|s| (*s).to_owned()).collect();
    for (body, order) in [
        // Quick: no sort, or a numeric sort, no total/facets.
        (json!({"limit": 100}), &sorted_ids),
        (json!({"sort": ["n"], "limit": 100}), &by_n),
        (json!({"sort": ["n"], "limit": 3}), &by_n),
        // Blocking: a keyword sort, a total, facets.
        (json!({"sort": ["id"], "limit": 100}), &sorted_ids),
        (json!({"sort": ["n"], "limit": 5, "total": true}), &by_n),
        (json!({"sort": ["n"], "limit": 100, "facets": ["kind"]}), &by_n),
    ] {
        let got = page_all(&s, &body);
        assert_eq!(got.iter().map(|(id, _)| id).collect::<Vec<_>>(), order.iter().collect::<Vec<_>>(), "{body}");
        for (id, doc) in &got {
            assert_eq!(doc, &want[id], "{body}: the doc of {id:?}");
        }
    }
    // Projections, both paths.
    for body in [
        json!({"sort": ["n"], "limit": 100, "fields": ["body", "id", "x"]}),
        json!({"sort": ["id"], "limit": 100, "fields": ["body", "id", "x"], "total": true}),
    ] {
        let (status, v) = query(&s, &body);
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["hits"].as_array().unwrap().len(), IDS.len());
        for h in v["hits"].as_array().unwrap() {
            let r = &want[h["id"].as_str().unwrap()];
            let mut expect = json!({"id": r["id"], "body": r["body"]});
            if !r["x"].is_null() {
                expect["x"] = r["x"].clone();
            }
            // A null value is stored as sent: the projection keeps it.
            if r.get("x").is_some_and(Value::is_null) {
                expect["x"] = Value::Null;
            }
            assert_eq!(h["doc"], expect, "{body}");
        }
    }
    // Streamed: the stored records, one per line.
    let lines = stream(&s, &json!({"sort": ["n:desc"]}));
    let mut rev = by_n.clone();
    rev.reverse();
    assert_eq!(lines.iter().map(|d| d["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>(), rev);
    for d in &lines {
        assert_eq!(d, &want[d["id"].as_str().unwrap()]);
    }
    let lines = stream(&s, &json!({"sort": ["id"], "fields": ["kind"]}));
    assert_eq!(lines, sorted_ids.iter().map(|id| json!({"kind": want[id]["kind"]})).collect::<Vec<_>>());
    // One by one, by id.
    for id in IDS {
        let (status, v) = call(&s, "GET", &format!("/collections/ev/documents/{}", enc(id)), &Value::Null);
        assert_eq!((status, &v), (200, &want[id]), "GET {id:?}");
    }
    assert_eq!(call(&s, "GET", &format!("/collections/ev/documents/{}", enc("u")), &Value::Null).0, 404);
}

#[test]
fn a_document_after_delete_and_put_again_and_queries_after_writes() {
    let s = server();
    let records: Vec<Value> = (0..30).map(|i| json!({"id": format!("d{i:02}"), "kind": "v1", "n": i})).collect();
    post(&s, &records);
    let quick = json!({"sort": ["n:desc"], "limit": 2});
    let blocking = json!({"sort": ["kind", "n:desc"], "limit": 2, "total": true});
    // Read first: the answers go into the cache.
    assert_eq!(ids(&query(&s, &quick).1), ["d29", "d28"]);
    assert_eq!(ids(&query(&s, &blocking).1), ["d29", "d28"]);
    let (status, _) = call(&s, "DELETE", "/collections/ev/documents/d29", &Value::Null);
    assert_eq!(status, 200);
    assert_eq!(call(&s, "GET", "/collections/ev/documents/d29", &Value::Null).0, 404);
    let (_, v) = query(&s, &quick);
    assert_eq!(ids(&v), ["d28", "d27"], "no answer from before the delete: {v}");
    let (_, v) = query(&s, &blocking);
    assert_eq!((ids(&v), v["total"].as_u64()), (vec!["d28".to_owned(), "d27".to_owned()], Some(29)));
    // Put again with other content (and a bigger n).
    post(&s, &[json!({"id": "d29", "kind": "v2 ✓", "n": 100, "body": {"again": true}})]);
    let (status, v) = call(&s, "GET", "/collections/ev/documents/d29", &Value::Null);
    assert_eq!((status, v), (200, json!({"id": "d29", "kind": "v2 ✓", "n": 100, "body": {"again": true}})));
    let (_, v) = query(&s, &quick);
    assert_eq!(ids(&v), ["d29", "d28"]);
    assert_eq!(v["hits"][0]["doc"], json!({"id": "d29", "kind": "v2 ✓", "n": 100, "body": {"again": true}}));
    let (_, v) = query(&s, &blocking);
    assert_eq!(ids(&v), ["d28", "d27"], "kind v1 before v2 ✓: {v}");
    // Replace with a smaller doc: the old bytes do not leak.
    post(&s, &[json!({"id": "d28", "n": 28})]);
    let (_, v) = query(&s, &quick);
    assert_eq!(v["hits"][1]["doc"], json!({"id": "d28", "n": 28}));
    assert_eq!(call(&s, "GET", "/collections/ev/documents/d28", &Value::Null).1, json!({"id": "d28", "n": 28}));
}

#[test]
fn cursor_errors_have_the_right_status_on_both_paths() {
    let s = server();
    let records: Vec<Value> = (0..40)
        .map(|i| json!({"id": format!("c{i:02}"), "kind": format!("k{}", i % 3), "n": i % 4, "x": f64::from(i) / 4.0}))
        .collect();
    post(&s, &records);
    let quick = json!({"sort": ["n"], "limit": 3});
    let blocking = json!({"sort": ["kind"], "limit": 3});
    let blocking_total = json!({"sort": ["n"], "limit": 3, "total": true});
    for base in [&quick, &blocking, &blocking_total] {
        let with = |c: Value| {
            let mut b = base.clone();
            b["cursor"] = c;
            b
        };
        // Malformed.
        for c in [json!("zzz"), json!("0000"), json!(12), json!(format!("{}g", "0".repeat(55)))] {
            let (status, v) = query(&s, &with(c.clone()));
            assert_eq!((status, v["field"].as_str()), (400, Some("cursor")), "{base} cursor {c}: {v}");
        }
        // Well formed, of no version kept.
        let (status, v) = query(&s, &with(json!("0".repeat(56))));
        assert_eq!(status, 409, "{base}: {v}");
        // Unknown fields.
        let mut b = base.clone();
        b["fields"] = json!(["nope"]);
        assert_eq!(query(&s, &b).0, 400, "{b}");
        let mut b = base.clone();
        b["filter"] = json!({"term": {"nope": "x"}});
        assert_eq!(query(&s, &b).0, 400, "{b}");
        let mut b = base.clone();
        b["sort"] = json!(["nope"]);
        assert_eq!(query(&s, &b).0, 400, "{b}");
        let mut b = base.clone();
        b["nope"] = json!(1);
        assert_eq!(query(&s, &b).0, 400, "{b}");
    }
    // A cursor made by one query, given to another: 400.
    let (_, v) = query(&s, &quick);
    let mut other = json!({"sort": ["n:desc"], "limit": 3, "cursor": v["next_cursor"]});
    assert_eq!(query(&s, &other).0, 400, "{other}");
    other["sort"] = json!(["kind"]);
    assert_eq!(query(&s, &other).0, 400, "{other}");

    // One write between pages: the cursor pages its version exactly.
    for base in [&quick, &blocking, &blocking_total] {
        let want = page_all(&s, base);
        assert_eq!(want.len(), 40);
        let (_, first) = query(&s, base);
        post(&s, &[json!({"id": "c00", "kind": "moved", "n": -1}), json!({"id": "a-new", "n": 0, "kind": "k0"})]);
        let mut got: Vec<(String, Value)> = first["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["id"].as_str().unwrap().to_owned(), h["doc"].clone()))
            .collect();
        let mut b = base.clone();
        b["cursor"] = first["next_cursor"].clone();
        got.extend(page_all(&s, &b));
        assert_eq!(got, want, "{base}");
        // Put it back as it was.
        post(&s, &[records[0].clone()]);
        assert_eq!(call(&s, "DELETE", "/collections/ev/documents/a-new", &Value::Null).0, 200);
    }

    // More writes than versions kept: 409, on each path.
    let cursors: Vec<(Value, Value)> = [&quick, &blocking, &blocking_total]
        .iter()
        .map(|b| ((*b).clone(), query(&s, b).1["next_cursor"].clone()))
        .collect();
    for i in 0..6 {
        post(&s, &[json!({"id": format!("late{i}"), "n": 1})]);
    }
    for (base, c) in &cursors {
        let mut b = base.clone();
        b["cursor"] = c.clone();
        let (status, v) = query(&s, &b);
        assert_eq!(status, 409, "{b}: {v}");
    }
    // A collection dropped and made again with other records: a cursor of
    // the dropped one pages the version it was made on (still kept), never
    // the new records.
    let before = page_all(&s, &quick);
    let (_, v) = query(&s, &quick);
    let c = v["next_cursor"].clone();
    assert_eq!(send(&s, "DELETE", "/collections/ev", "", b"").0, 200);
    assert_eq!(send(&s, "PUT", "/collections/ev", "", SCHEMA.as_bytes()).0, 201);
    post(&s, &(0..10).map(|i| json!({"id": format!("other{i}"), "n": i % 2})).collect::<Vec<_>>());
    let mut b = quick.clone();
    b["cursor"] = c;
    let rest = page_all(&s, &b);
    assert_eq!(rest, before[3..].to_vec());
}

#[test]
fn records_over_a_mebibyte_and_streams_past_one_page() {
    let s = server();
    let big = "é\"\\✓x".repeat(300_000); // about 2.4 MB of JSON
    let mut records = vec![json!({"id": "big", "n": 5, "body": {"s": big}})];
    // Past MAX_LIMIT (10,000): the stream pages internally.
    records.extend((0..10_050).map(|i| json!({"id": format!("s{i:05}"), "n": i % 7, "kind": format!("k{}", i % 40)})));
    post(&s, &records);
    let want = by_id(&records);
    let (status, v) = call(&s, "GET", "/collections/ev/documents/big", &Value::Null);
    assert_eq!((status, &v), (200, &want["big"]));
    let (status, v) =
        query(&s, &json!({"filter": {"range": {"n": {"gte": 5, "lte": 5}}}, "sort": ["n:desc"], "limit": 1}));
    assert_eq!((status, ids(&v)), (200, vec!["big".to_owned()]));
    assert_eq!(v["hits"][0]["doc"], want["big"]);
    // Every record, streamed in the sort's order, each once.
    let lines = stream(&s, &json!({"sort": ["n:desc"], "filter": {"range": {"n": {"gte": 0}}}}));
    let mut expect: Vec<(i64, String)> = records
        .iter()
        .filter(|r| r["n"].as_i64().unwrap() >= 0)
        .map(|r| (r["n"].as_i64().unwrap(), r["id"].as_str().unwrap().to_owned()))
        .collect();
    expect.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    assert!(expect.len() > 10_000);
    assert_eq!(lines.len(), expect.len());
    for (line, (_, id)) in lines.iter().zip(&expect) {
        assert_eq!(line, &want[id]);
    }
}

#[test]
fn a_streamed_query_with_an_expired_cursor_is_refused_not_answered_empty() {
    let s = server();
    post(&s, &(0..20).map(|i| json!({"id": format!("e{i:02}"), "n": i})).collect::<Vec<_>>());
    let (_, v) = query(&s, &json!({"sort": ["n"], "limit": 3}));
    for i in 0..6 {
        post(&s, &[json!({"id": format!("late{i}"), "n": 1})]);
    }
    let body = json!({"sort": ["n"], "limit": 3, "cursor": v["next_cursor"]});
    assert_eq!(query(&s, &body).0, 409);
    // The same query streamed: a 200 with an empty body would read as "no
    // more hits".
    let (status, raw) =
        send(&s, "POST", "/collections/ev/query", "Accept: application/x-ndjson\r\n", body.to_string().as_bytes());
    assert_eq!(status, 409, "streamed {body}: {:?}", String::from_utf8_lossy(&raw));
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b).read_to_end(&mut out).unwrap();
    out
}

const KINDS: [&str; 3] = ["Alpha", "beta", "gamma"];

#[test]
fn the_quick_and_the_blocking_path_give_one_answer_cached_compressed_or_not() {
    let s = server();
    let records: Vec<Value> = (0..300)
        .map(|i| {
            let mut r = json!({"id": format!("q{:03}", (i * 17) % 300), "n": i % 5, "kind": KINDS[i % 3]});
            if i % 4 != 0 {
                r["x"] = json!(f64::from(i as u32 % 9) / 2.0 - 2.0);
            }
            if i % 6 != 0 {
                r["at"] = json!(1_796_547_600 + 60 * (i % 7) as i64);
            }
            r
        })
        .collect();
    post(&s, &records);
    let mut compressed = 0;
    for filter in [
        json!({"term": {"kind": "ALPHA"}}),
        json!({"and": [{"range": {"n": {"gte": 1}}}, {"range": {"n": {"lt": 4}}}, {"not": {"term": {"kind": "beta"}}}]}),
        json!({"or": [{"range": {"x": {"lt": 0}}}, {"prefix": {"kind": "g"}}]}),
        json!({"range": {"at": {"gte": 1_796_547_660, "lt": "2026-12-06T09:05:00Z"}}}),
    ] {
        for sort in [json!([]), json!(["n"]), json!(["n:desc", "x"]), json!(["x:desc"]), json!(["at", "n:desc"])] {
            let quick = json!({"filter": filter, "sort": sort, "limit": 20});
            let mut blocking = quick.clone();
            blocking["total"] = json!(true);
            let (status, mut b) = query(&s, &blocking);
            assert_eq!(status, 200, "{b}");
            b.as_object_mut().unwrap().remove("total");
            let (raw_status, plain) = send(&s, "POST", "/collections/ev/query", "", quick.to_string().as_bytes());
            assert_eq!(raw_status, 200);
            let q: Value = serde_json::from_slice(&plain).unwrap();
            assert_eq!(q, b, "{quick}: quick and blocking differ");
            // Gzip, then again from the cache: the same bytes.
            for _ in 0..2 {
                let req = format!(
                    "POST /collections/ev/query HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAccept-Encoding: gzip\r\nContent-Length: {}\r\n\r\n{quick}",
                    quick.to_string().len()
                );
                let (status, head, body) = exchange(&s.addr, req.as_bytes());
                assert_eq!(status, 200);
                let gzip = head.to_ascii_lowercase().contains("content-encoding: gzip");
                compressed += usize::from(gzip);
                let body = if gzip { gunzip(&body) } else { body };
                assert_eq!(body, plain, "{quick}");
            }
            let (_, again) = send(&s, "POST", "/collections/ev/query", "", quick.to_string().as_bytes());
            assert_eq!(again, plain, "{quick}: from the cache");
        }
    }
    assert!(compressed > 0, "some answers were compressed");
}
