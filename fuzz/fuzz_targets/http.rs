//! The whole HTTP front end from raw bytes: the input is what a client
//! sends on one connection (HTTP/1.x, pipelined or not, or HTTP/2 with its
//! preface), served by hyper with the server's settings and `App::call`,
//! over an in-memory pipe instead of a socket. Every route is reachable:
//! GET /search /reverse /get/{id} /health /health/ready /metrics
//! /snapshot/latest /snapshot/{n}, POST /search/csv /reverse/csv
//! (multipart) and /documents, DELETE /documents/{id} (the write token is
//! `fuzz`).
//!
//! Checked: no panic on any thread (libfuzzer-sys aborts on a panic, and a
//! panic in a blocking task would show as a 500), no 500, every response
//! well framed, JSON bodies are JSON, and the exchange ends within 10 s.
//! A connection that ends in an error goes through `App::connection_failed`
//! as in the server (the 431s hyper sends are counted there). The seeds
//! have repeated parameters and ids with `+`, `&` and broken escapes in
//! `/get/...` and `DELETE /documents/...`; what those must answer is
//! checked by the `http_get` target.
//! A write changes the database: it is put back from a snapshot after the
//! input, so that every input starts from the same state.
#![no_main]

use std::convert::Infallible;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cairn::{CacheConfig, Database, ResponseCache};
use cairn_fuzz::{fixture_db, process_dir};
use cairn_server::config::Limits;
use cairn_server::http::{connection_builder, App};
use cairn_server::replica::Publisher;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct State {
    app: Arc<App>,
    db: Arc<Database>,
    rt: tokio::runtime::Runtime,
    original: Vec<u8>,
    generation: u64,
    documents: u64,
}

fn state() -> &'static State {
    static S: OnceLock<State> = OnceLock::new();
    S.get_or_init(|| {
        let dir = process_dir("cairn-fuzz-http-");
        let db = Arc::new(fixture_db(&dir));
        let mut original = Vec::new();
        db.create_snapshot(&mut original).expect("snapshot of the fixture");
        // A small cache, so that eviction runs too; small limits, so that
        // the fuzzer can reach them.
        let cache = ResponseCache::new(CacheConfig { max_bytes: 256 << 10, ..CacheConfig::default() });
        let limits = Limits { max_upload: 64 << 10, max_uri_bytes: 1024, ..Limits::default() };
        let mut app = App::new(Arc::clone(&db), Some(cache), limits);
        app.write_token = Some("fuzz".into());
        app.publisher = Some(Publisher::new(db.path()));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let (generation, documents) = (db.generation(), db.len());
        State { app: Arc::new(app), db, rt, original, generation, documents }
    })
}

/// One connection: sends `input`, closes the sending side, reads all that
/// comes back.
async fn exchange(app: Arc<App>, input: &[u8]) -> Vec<u8> {
    let (mut client, server) = tokio::io::duplex(64 << 10);
    // As `cairn_server::http::serve` sets it up.
    let mut builder = connection_builder(&app.limits);
    // The client closes its side once its requests are sent: answer them.
    builder.http1().half_close(true);
    let counts = app.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.call(req, IpAddr::V4(Ipv4Addr::LOCALHOST)).await) }
    });
    let conn = async {
        if let Err(e) = builder.serve_connection(TokioIo::new(server), service).await {
            counts.connection_failed(&*e);
        }
    };
    let talk = async {
        // The server may stop reading (a refused request): keep what it sent.
        let _ = client.write_all(input).await;
        let _ = client.shutdown().await;
        let mut out = Vec::new();
        let _ = client.read_to_end(&mut out).await;
        out
    };
    let (_, out) = tokio::join!(conn, talk);
    out
}

/// Checks the responses of an HTTP/1 exchange: each head parses, each body
/// is framed by its length or its chunks.
fn check_http1(mut out: &[u8]) {
    while !out.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut headers);
        let head = match r.parse(out) {
            Ok(httparse::Status::Complete(n)) => n,
            // Cut off by a connection the server closed after a refusal.
            Ok(httparse::Status::Partial) => return,
            Err(e) => panic!("unparsable response head ({e}): {:?}", String::from_utf8_lossy(out)),
        };
        let status = r.code.unwrap();
        let header = |name: &str| {
            r.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| String::from_utf8_lossy(h.value))
        };
        let (length, chunked) = (header("content-length"), header("transfer-encoding"));
        let (coding, ctype) = (header("content-encoding"), header("content-type"));
        out = &out[head..];
        let body: Vec<u8> = if status == 204 || status == 304 || (100..200).contains(&status) {
            Vec::new()
        } else if let Some(n) = length {
            let n: usize = n.parse().expect("content-length");
            if n > 0 && out.starts_with(b"HTTP/1.") || out.is_empty() {
                // The answer to a HEAD: no body (no body of this server
                // starts so).
                check_response(status, None, None, b"");
                continue;
            }
            if out.len() < n {
                return; // cut off
            }
            let (b, rest) = out.split_at(n);
            out = rest;
            b.to_vec()
        } else if chunked.is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
            let mut body = Vec::new();
            loop {
                let Some(eol) = out.windows(2).position(|w| w == b"\r\n") else { return };
                let size = std::str::from_utf8(&out[..eol]).ok().and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
                let size = size.unwrap_or_else(|| panic!("bad chunk size line {:?}", String::from_utf8_lossy(&out[..eol])));
                out = &out[eol + 2..];
                if size == 0 {
                    // No trailers from this server.
                    if out.starts_with(b"\r\n") {
                        out = &out[2..];
                    }
                    break;
                }
                if out.len() < size + 2 {
                    return;
                }
                body.extend_from_slice(&out[..size]);
                assert_eq!(&out[size..size + 2], b"\r\n", "chunk not followed by CRLF");
                out = &out[size + 2..];
            }
            body
        } else {
            let b = out.to_vec();
            out = &[];
            b
        };
        check_response(status, coding.as_deref(), ctype.as_deref(), &body);
    }
}

fn check_response(status: u16, coding: Option<&str>, ctype: Option<&str>, body: &[u8]) {
    assert!(status != 500 && status < 600, "status {status}: {:?}", String::from_utf8_lossy(body));
    let mut plain = Vec::new();
    match coding {
        None => plain.extend_from_slice(body),
        Some("gzip") => {
            if flate2::read::GzDecoder::new(body).read_to_end(&mut plain).is_err() {
                return; // cut short (HEAD)
            }
        }
        Some("br") => {
            if brotli::Decompressor::new(body, 4096).read_to_end(&mut plain).is_err() {
                return;
            }
        }
        Some(c) => panic!("unknown coding {c}"),
    }
    if ctype.is_some_and(|t| t.starts_with("application/json")) && !plain.is_empty() {
        serde_json::from_slice::<serde_json::Value>(&plain)
            .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {:?}", String::from_utf8_lossy(&plain)));
    }
}

fuzz_target!(|data: &[u8]| {
    let s = state();
    let out = s.rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), exchange(s.app.clone(), data))
            .await
            .unwrap_or_else(|_| panic!("no answer within 10 s"))
    });
    if std::env::var_os("CAIRN_FUZZ_DEBUG").is_some() {
        eprintln!("<<< {}\n>>> {}", String::from_utf8_lossy(data), String::from_utf8_lossy(&out[..out.len().min(2000)]));
    }
    if !data.starts_with(b"PRI * HTTP/2.0") {
        check_http1(&out);
    }
    if s.db.generation() != s.generation || s.db.len() != s.documents {
        s.db.restore_snapshot(&mut &s.original[..]).expect("restoring the fixture");
    }
});
