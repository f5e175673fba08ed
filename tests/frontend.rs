//! The server's front end: compression, limits, rate limiting, readiness,
//! metrics, access log, HTTP/2 and graceful shutdown, against a real
//! `cairn serve` on 127.0.0.1.

#[path = "common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{enc, exchange, fixture, parse_response, Server};

fn served(extra: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    common::import(dir.path(), &[&fixture("small.ndjson")]);
    Server::serve_with(dir, extra)
}

fn get(s: &Server, target: &str, headers: &str) -> (u16, String, Vec<u8>) {
    let req = format!("GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{headers}\r\n", s.addr);
    exchange(&s.addr, req.as_bytes())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn gunzip(b: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(b).read_to_string(&mut out).expect("valid gzip");
    out
}

fn unbrotli(b: &[u8]) -> String {
    let mut out = String::new();
    brotli::Decompressor::new(b, 4096).read_to_string(&mut out).expect("valid brotli");
    out
}

const Q: &str = "/search?q=rue&limit=10";

#[test]
fn responses_are_compressed_as_the_client_accepts() {
    let s = served(&[]);
    let (status, head, plain) = get(&s, Q, "");
    assert_eq!(status, 200);
    assert!(header(&head, "content-encoding").is_none());
    assert!(plain.len() > 1024, "the test query must give a body above the threshold: {}", plain.len());
    let plain = String::from_utf8(plain).unwrap();

    let (_, head, gz) = get(&s, Q, "Accept-Encoding: gzip, deflate\r\n");
    assert_eq!(header(&head, "content-encoding"), Some("gzip"), "{head}");
    assert_eq!(header(&head, "vary"), Some("Accept-Encoding"));
    assert_eq!(gunzip(&gz), plain);
    assert!(gz.len() < plain.len() / 2, "{} of {}", gz.len(), plain.len());

    let (_, head, br) = get(&s, Q, "Accept-Encoding: gzip, br\r\n");
    assert_eq!(header(&head, "content-encoding"), Some("br"), "{head}");
    assert_eq!(unbrotli(&br), plain);
    // Asked again, the cached compressed entry answers, still compressed.
    let (_, head, br2) = get(&s, Q, "Accept-Encoding: br\r\n");
    assert_eq!(header(&head, "content-encoding"), Some("br"));
    assert_eq!(br2, br);

    let (_, head, _) = get(&s, Q, "Accept-Encoding: br;q=0, gzip;q=0.5\r\n");
    assert_eq!(header(&head, "content-encoding"), Some("gzip"));
    let (_, head, _) = get(&s, Q, "Accept-Encoding: identity\r\n");
    assert!(header(&head, "content-encoding").is_none());
    // Small bodies are not worth it.
    let (status, head, body) = get(&s, "/search?q=paix&limit=1", "Accept-Encoding: gzip\r\n");
    assert_eq!(status, 200);
    assert!(body.len() < 1024 && header(&head, "content-encoding").is_none(), "{head}");

    // The CSV routes compress their stream.
    let csv = std::fs::read(fixture("small.csv")).unwrap();
    let (_, body) = {
        let boundary = "b0undary";
        let mut form =
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"data\"; filename=\"a.csv\"\r\n\r\n")
                .into_bytes();
        form.extend_from_slice(&csv);
        form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let mut req = format!(
            "POST /search/csv HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAccept-Encoding: gzip\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
            form.len()
        )
        .into_bytes();
        req.extend_from_slice(&form);
        let (status, head, body) = exchange(&s.addr, &req);
        assert_eq!((status, header(&head, "content-encoding")), (200, Some("gzip")), "{head}");
        (head, body)
    };
    let text = gunzip(&body);
    assert!(text.starts_with("id;") && text.contains("result_label"), "{text}");
}

#[test]
fn limits_answer_with_their_status_and_a_json_reason() {
    let s = served(&["--max-limit", "10", "--max-uri-bytes", "2000"]);
    let (status, v) = s.get_json("/search?q=paris&limit=11");
    assert_eq!(status, 400);
    assert!(v["description"].as_str().unwrap().contains("(1..10)"), "{v}");
    assert_eq!(s.get_json("/search?q=paris&limit=10").0, 200);

    let (status, v) = s.get_json(&format!("/search?q=paris&x={}", "a".repeat(3000)));
    assert_eq!(status, 414, "{v}");
    assert!(v["title"].as_str().unwrap().contains("limit is 2000"), "{v}");

    // A head larger than --max-header-bytes (16 KiB by default).
    let (status, _, _) = get(&s, "/search?q=paris", &format!("X-Big: {}\r\n", "a".repeat(40_000)));
    assert_eq!(status, 431);
    let many: String = (0..100).map(|i| format!("X-H{i}: 1\r\n")).collect();
    assert_eq!(get(&s, "/search?q=paris", &many).0, 431);

    // Uploads above --max-upload.
    let small = served(&["--max-upload", "1000"]);
    let big = vec![b'a'; 5000];
    let (status, _, body) = common::post_multipart(&small.addr, "/search/csv", &[("data", Some("x.csv"), &big)]);
    assert_eq!(status, 413);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(v["title"].as_str().unwrap().contains("limit is 1000"), "{v}");
    // Still serving.
    assert_eq!(s.get_json("/health").0, 200);
}

#[test]
fn a_query_over_its_time_budget_answers_503_and_is_not_cached() {
    let s = served(&["--time-budget", "1ns"]);
    let (status, head, body) = get(&s, "/search?q=rue%20de%20la%20paix", "");
    assert_eq!(status, 503);
    assert_eq!(header(&head, "retry-after"), Some("1"));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(v["title"].as_str().unwrap().contains("time budget"), "{v}");
    assert_eq!(s.get_json("/health").1["cache"]["entries"], 0);
    // Routes without a search are not affected.
    assert_eq!(s.get_json("/reverse?lat=48.869&lon=2.331").0, 200);
    let normal = served(&[]);
    assert_eq!(normal.get_json("/search?q=rue%20de%20la%20paix").0, 200);
}

#[test]
fn rate_limit_answers_429_with_its_headers() {
    let s = served(&["--rate-limit", "0.5", "--rate-burst", "2"]);
    let (status, head, _) = get(&s, "/search?q=paris", "");
    assert_eq!(status, 200);
    assert_eq!(header(&head, "x-ratelimit-limit"), Some("2"));
    assert_eq!(header(&head, "x-ratelimit-remaining"), Some("1"));
    assert_eq!(get(&s, "/search?q=lyon", "").0, 200);
    let (status, head, body) = get(&s, "/search?q=lyon", "");
    assert_eq!(status, 429, "{head}");
    assert_eq!(header(&head, "retry-after"), Some("2"), "one token comes back in 1/rate = 2 s");
    assert_eq!(header(&head, "x-ratelimit-remaining"), Some("0"));
    assert_eq!(header(&head, "x-ratelimit-reset"), Some("4"));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["title"], "Too many requests");
    // Probes are never limited.
    assert_eq!(s.get_json("/health/ready").0, 200);
    assert_eq!(s.request("GET", "/metrics").0, 200);
    // Off by default.
    let free = served(&[]);
    for _ in 0..20 {
        let (status, head, _) = get(&free, "/search?q=paris", "");
        assert_eq!(status, 200);
        assert!(header(&head, "x-ratelimit-limit").is_none());
    }
}

#[test]
fn readiness_needs_an_open_index() {
    let s = served(&[]);
    let (status, v) = s.get_json("/health/ready");
    assert_eq!((status, v["status"].as_str()), (200, Some("READY")), "{v}");
    assert_eq!(v["documents"], 16);
    // A database with nothing imported is alive but not ready.
    let empty = Server::serve(tempfile::tempdir().unwrap());
    assert_eq!(empty.get_json("/health").0, 200);
    let (status, v) = empty.get_json("/health/ready");
    assert_eq!((status, v["status"].as_str()), (503, Some("NOT_READY")), "{v}");
}

#[test]
fn metrics_count_requests_cache_and_documents() {
    let s = served(&[]);
    for _ in 0..3 {
        s.request("GET", "/search?q=paris");
    }
    s.request("GET", "/search?q=");
    s.request("GET", "/reverse?lat=48.869&lon=2.331");
    let (status, text) = s.request("GET", "/metrics");
    assert_eq!(status, 200);
    for line in [
        "cairn_requests_total{route=\"/search\",status=\"200\"} 3",
        "cairn_requests_total{route=\"/search\",status=\"400\"} 1",
        "cairn_requests_total{route=\"/reverse\",status=\"200\"} 1",
        "cairn_request_duration_seconds_count{route=\"/search\"} 4",
        "cairn_request_duration_seconds_bucket{route=\"/search\",le=\"+Inf\"} 4",
        "cairn_cache_hits_total 2",
        "cairn_cache_misses_total 2",
        "cairn_documents 16",
        "cairn_generation 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    let rss = text.lines().find_map(|l| l.strip_prefix("process_resident_memory_bytes ")).expect("memory gauge");
    assert!(rss.parse::<f64>().unwrap() > 1e6);
}

/// hyper answers a request head over the limits with 431 itself, before
/// the server sees the request: /metrics counts those too, a head too large
/// and too many headers alike.
#[test]
fn a_431_from_hyper_is_counted_in_the_metrics() {
    let s = served(&[]);
    // The count is made once hyper has closed the connection, which the
    // client may see first: wait for it (5 s at most).
    let counted = |n: usize| {
        let line = format!("cairn_requests_total{{route=\"other\",status=\"431\"}} {n}");
        for _ in 0..250 {
            if s.request("GET", "/metrics").1.lines().any(|l| l == line) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no {line:?} in\n{}", s.request("GET", "/metrics").1);
    };
    // A head larger than --max-header-bytes (16 KiB by default).
    assert_eq!(get(&s, "/search?q=paris", &format!("X-Big: {}\r\n", "a".repeat(40_000))).0, 431);
    counted(1);
    // More headers than --max-headers (64), in a small head.
    let many: String = (0..100).map(|i| format!("X-H{i}: 1\r\n")).collect();
    assert_eq!(get(&s, "/search?q=paris", &many).0, 431);
    counted(2);
    let text = s.request("GET", "/metrics").1;
    assert!(!text.contains("route=\"/search\""), "the refused requests reached no route: {text}");
}

#[test]
fn access_log_writes_one_json_line_per_request() {
    let dir = tempfile::tempdir().unwrap();
    common::import(dir.path(), &[&fixture("small.ndjson")]);
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("stderr.log");
    let file = std::fs::File::create(&log).unwrap();
    let s = Server::serve_logged(dir, &["--access-log", "json"], Stdio::from(file));
    s.request("GET", &format!("/search?q={}", enc("rue de la paix")));
    s.request("GET", "/nowhere");
    assert!(s.terminate().success());
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["fields"]["status"].is_number())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["fields"]["status"], 200);
    assert_eq!(lines[0]["fields"]["target"], "/search?q=rue%20de%20la%20paix");
    assert_eq!(lines[0]["fields"]["method"], "GET");
    assert_eq!(lines[1]["fields"]["status"], 404);
}

#[test]
fn http2_with_prior_knowledge() {
    use http_body_util::BodyExt;
    let s = served(&[]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let stream = tokio::net::TcpStream::connect(&s.addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get(format!("http://{}/search?q=lyon", s.addr))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.version(), hyper::Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["features"][0]["properties"]["city"], "Lyon");
    });
}

/// Sends a CSV upload's head and half its body, so the request is in flight.
fn start_upload(addr: &str) -> (TcpStream, Vec<u8>) {
    let csv = std::fs::read(fixture("small.csv")).unwrap();
    let boundary = "b0undary";
    let mut form = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"data\"; filename=\"a.csv\"\r\n\r\n")
        .into_bytes();
    form.extend_from_slice(&csv);
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "POST /search/csv HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        form.len()
    )
    .unwrap();
    let rest = form.split_off(form.len() / 2);
    s.write_all(&form).unwrap();
    s.flush().unwrap();
    (s, rest)
}

#[test]
fn sigterm_finishes_the_request_in_flight_then_exits_0() {
    let s = served(&[]);
    let addr = s.addr.clone();
    let (mut conn, rest) = start_upload(&addr);
    std::thread::sleep(Duration::from_millis(300));
    s.send_term();
    std::thread::sleep(Duration::from_millis(300));
    assert!(TcpStream::connect(&addr).is_err(), "no new connections once stopping");
    conn.write_all(&rest).unwrap();
    let mut raw = Vec::new();
    let _ = conn.read_to_end(&mut raw);
    let (status, _, body) = parse_response(&raw);
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    let rows = std::fs::read_to_string(fixture("small.csv")).unwrap().lines().count();
    assert_eq!(text.lines().count(), rows, "header and every row: {text}");
    assert!(s.wait().success());
}

#[test]
fn shutdown_gives_up_on_a_stalled_request_after_its_deadline() {
    let s = served(&["--shutdown-timeout", "1s"]);
    let (_conn, _rest) = start_upload(&s.addr);
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    s.send_term();
    assert!(s.wait().success());
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "waited for the request in flight: {took:?}");
}
