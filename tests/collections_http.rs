//! Collections over HTTP and from the CLI, against a real `cairn serve` on
//! 127.0.0.1: schema, documents (NDJSON, JSON array, CSV, gzip), queries,
//! cursors, NDJSON streaming, errors with their field, and a replica.

#[path = "common/mod.rs"]
mod common;

use std::io::Write;

use common::{cairn, exchange, Server};
use serde_json::{json, Value};

const TOKEN: &str = "s3cret-token";

fn send(s: &Server, method: &str, target: &str, headers: &str, body: &[u8]) -> (u16, Vec<u8>) {
    common::send_authorized(&s.addr, TOKEN, method, target, headers, body)
}

fn call(s: &Server, method: &str, target: &str, body: &Value) -> (u16, Value) {
    let (status, body) = send(s, method, target, "Content-Type: application/json\r\n", body.to_string().as_bytes());
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

const SCHEMA: &str = r#"
primary_key = "id"
[fields]
id = { type = "keyword" }
status = { type = "keyword", lowercase = true }
at = { type = "date" }
score = { type = "float" }
where = { type = "geo_point" }
note = { type = "text" }
"#;

fn server() -> Server {
    let s = Server::serve_with(tempfile::tempdir().unwrap(), &["--write-token", TOKEN]);
    let (status, body) = send(&s, "PUT", "/collections/checks", "", SCHEMA.as_bytes());
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    s
}

fn ids(v: &Value) -> Vec<String> {
    v["hits"].as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn documents_in_three_formats_then_queries_with_cursor_and_facets() {
    let s = server();
    let ndjson = "{\"id\":\"a\",\"status\":\"OK\",\"at\":\"2026-12-01T10:00:00Z\",\"score\":1.5,\"note\":\"red fox\"}\n{\"id\":\"b\",\"status\":\"late\",\"at\":1796120000}\n";
    let (status, body) =
        send(&s, "POST", "/collections/checks/documents", "Content-Type: application/x-ndjson\r\n", ndjson.as_bytes());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let array = json!([{"id": "c", "status": "ok", "at": "2026-12-02T00:00:00+01:00", "where": {"lat": 45.7, "lon": 4.8}},
                       {"id": "d", "status": "ok", "note": "quick brown fox"}]);
    let (status, v) = call(&s, "POST", "/collections/checks/documents", &array);
    assert_eq!((status, v["written"].as_u64(), v["total"].as_u64()), (200, Some(2), Some(4)), "{v}");
    // CSV, gzip-compressed.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"id;status;score;where\ne;ok;2.5;45.75,4.85\nf;late;;\n").unwrap();
    let gz = gz.finish().unwrap();
    let (status, body) =
        send(&s, "POST", "/collections/checks/documents", "Content-Type: text/csv\r\nContent-Encoding: gzip\r\n", &gz);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    let (status, v) = call(
        &s,
        "POST",
        "/collections/checks/query",
        &json!({
            "filter": {"term": {"status": "Ok"}}, "sort": ["at:desc"], "limit": 2, "total": true, "facets": ["status"]
        }),
    );
    assert_eq!(status, 200, "{v}");
    // c (2026-12-01T23:00Z) then a (10:00Z); d and e have no date: last, by id.
    assert_eq!(ids(&v), ["c", "a"]);
    assert_eq!(v["total"], 4);
    assert_eq!(v["facets"]["status"], json!([{"value": "ok", "count": 4}]));
    let (_, v2) = call(
        &s,
        "POST",
        "/collections/checks/query",
        &json!({
            "filter": {"term": {"status": "Ok"}}, "sort": ["at:desc"], "limit": 2, "cursor": v["next_cursor"]
        }),
    );
    assert_eq!(ids(&v2), ["d", "e"]);
    assert!(v2["next_cursor"].is_null());

    let (_, v) = call(
        &s,
        "POST",
        "/collections/checks/query",
        &json!({"filter": {"radius": {"where": {"lat": 45.7, "lon": 4.8, "meters": 10000}}}}),
    );
    assert_eq!(ids(&v), ["c", "e"]);
    let (_, v) = call(&s, "POST", "/collections/checks/query", &json!({"q": "fox", "fields": ["note"]}));
    assert_eq!(ids(&v).len(), 2);
    assert_eq!(v["hits"][0]["doc"], json!({"note": "red fox"}), "the shorter note ranks first");

    // Every hit, streamed.
    let (status, body) = send(
        &s,
        "POST",
        "/collections/checks/query",
        "Accept: application/x-ndjson\r\n",
        br#"{"sort": ["id"], "limit": 1}"#,
    );
    assert_eq!(status, 200);
    let lines: Vec<Value> =
        body.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
    assert_eq!(lines.iter().map(|d| d["id"].as_str().unwrap()).collect::<Vec<_>>(), ["a", "b", "c", "d", "e", "f"]);

    // Point get, delete by id, delete by filter.
    let (status, v) = call(&s, "GET", "/collections/checks/documents/c", &Value::Null);
    assert_eq!((status, v["where"]["lat"].as_f64()), (200, Some(45.7)));
    assert_eq!(call(&s, "DELETE", "/collections/checks/documents/c", &Value::Null).0, 200);
    assert_eq!(call(&s, "GET", "/collections/checks/documents/c", &Value::Null).0, 404);
    let (status, v) = call(&s, "POST", "/collections/checks/delete", &json!({"filter": {"term": {"status": "late"}}}));
    assert_eq!((status, v["deleted"].as_u64(), v["total"].as_u64()), (200, Some(2), Some(3)), "{v}");
}

#[test]
fn bad_input_gets_a_4xx_naming_the_field() {
    let s = server();
    let post = |body: &str| {
        let (status, b) = send(
            &s,
            "POST",
            "/collections/checks/documents",
            "Content-Type: application/x-ndjson\r\n",
            body.as_bytes(),
        );
        (status, serde_json::from_slice::<Value>(&b).unwrap())
    };
    let (status, v) = post("{\"id\":\"a\"}\n{\"id\":\"b\",\"score\":\"high\"}\n");
    assert_eq!((status, v["at"].as_str(), v["field"].as_str()), (400, Some("line 2"), Some("score")), "{v}");
    let (_, v) = call(&s, "POST", "/collections/checks/query", &json!({}));
    assert_eq!(ids(&v), Vec::<String>::new(), "nothing of the failed import was written");
    let (status, v) = post("{\"id\":\"a\",\"colour\":\"red\"}\n");
    assert_eq!((status, v["field"].as_str()), (400, Some("colour")), "an unknown field: {v}");

    let q = |body: Value| call(&s, "POST", "/collections/checks/query", &body);
    let (status, v) = q(json!({"filter": {"range": {"status": {"gte": "a"}}}}));
    assert_eq!((status, v["field"].as_str()), (400, Some("filter.range.status")), "{v}");
    let (status, v) = q(json!({"filter": {"term": {"score": "x"}}}));
    assert_eq!((status, v["field"].as_str()), (400, Some("filter.term.score")), "{v}");
    let (status, v) = q(json!({"cursor": "0000"}));
    assert_eq!((status, v["field"].as_str()), (400, Some("cursor")), "{v}");
    let (status, v) = q(json!({"sort": ["nope:desc"]}));
    assert_eq!((status, v["field"].as_str()), (400, Some("sort[0]")), "{v}");
    let (status, _) = send(&s, "POST", "/collections/checks/query", "", b"{not json");
    assert_eq!(status, 400);

    // Schema changes: adding a field is fine, changing one is a conflict.
    let (status, _) =
        send(&s, "PUT", "/collections/checks", "", format!("{SCHEMA}extra = {{ type = \"integer\" }}\n").as_bytes());
    assert_eq!(status, 200);
    let (status, body) = send(
        &s,
        "PUT",
        "/collections/checks",
        "",
        SCHEMA.replace("at = { type = \"date\" }", "at = { type = \"integer\" }").as_bytes(),
    );
    assert_eq!(status, 409, "{}", String::from_utf8_lossy(&body));
    assert_eq!(call(&s, "POST", "/collections/nope/query", &json!({})).0, 404);
    // Writes without the token are refused.
    let (status, _, _) =
        exchange(&s.addr, b"DELETE /collections/checks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 401);
}

#[test]
fn the_cli_imports_a_collection_that_a_server_then_serves() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema.toml");
    std::fs::write(&schema, SCHEMA).unwrap();
    let data = dir.path().join("records.ndjson");
    std::fs::write(&data, "{\"id\":\"a\",\"status\":\"ok\"}\n{\"id\":\"b\",\"score\":\"x\"}\n{\"id\":\"c\"}\n")
        .unwrap();
    let db = tempfile::tempdir().unwrap();
    let d = db.path().display().to_string();
    let out = cairn(&[
        "import",
        "--data",
        &d,
        "--collection",
        "checks",
        "--schema",
        &schema.display().to_string(),
        &data.display().to_string(),
    ]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read_dir(db.path()).unwrap().count(), 0, "a failed import leaves no database behind");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2: field \"score\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cairn(&[
        "import",
        "--data",
        &d,
        "--collection",
        "checks",
        "--schema",
        &schema.display().to_string(),
        "--skip-invalid",
        &data.display().to_string(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 2 records into checks"));
    let s = Server::serve(db);
    let (status, v) = call(&s, "POST", "/collections/checks/query", &json!({"sort": ["id"], "total": true}));
    assert_eq!((status, ids(&v), v["total"].as_u64()), (200, vec!["a".to_owned(), "c".to_owned()], Some(2)));
}
