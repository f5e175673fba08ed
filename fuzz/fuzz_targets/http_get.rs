//! The GET routes of the HTTP front end (`App::get`, what the server runs
//! for them after its limits) with a fuzzed query string or path: never a
//! 500, and every body is JSON (but /metrics, which is text).
//!
//! Also checked:
//! - the response cache never changes an answer: every `/search` and
//!   `/reverse` answer of the app with a cache (which keeps answers across
//!   inputs) is the answer of an app without one;
//! - a repeated parameter in both orders (`name=a&name=b`, then
//!   `name=b&name=a`, the mode of bit 6) gets each order's own answer, by
//!   the check above: the last value wins, so the two are two requests;
//! - `/get/{id}` looks up the id decoded as a path segment (`%XX` only: `+`
//!   and `&` are part of the id), answers 400 when that does not decode,
//!   and 200 exactly when the database has that id.
#![no_main]

use std::future::Future;
use std::io::Read;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use cairn::{CacheConfig, ResponseCache};
use cairn_fuzz::{small_db, Bytes};
use cairn_server::compress::Encoding;
use cairn_server::config::Limits;
use cairn_server::http::App;
use cairn_server::metrics::Route;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;

fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        // A small cache, so that eviction runs too.
        let cache = ResponseCache::new(CacheConfig { max_bytes: 256 << 10, ..CacheConfig::default() });
        App::new(Arc::clone(small_db()), Some(cache), Limits::default())
    })
}

/// The same app without a cache: what every answer should be.
fn uncached() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| App::new(Arc::clone(small_db()), None, Limits::default()))
}

const ROUTES: [(Route, &str); 6] = [
    (Route::Search, "/search"),
    (Route::Reverse, "/reverse"),
    (Route::Get, "/get/"),
    (Route::Health, "/health"),
    (Route::Ready, "/health/ready"),
    (Route::Metrics, "/metrics"),
];

/// Parameters that the repeat mode gives twice: every one a search or a
/// reverse request reads, aliases included.
const REPEATED: [&str; 12] = [
    "q",
    "limit",
    "autocomplete",
    "lat",
    "lon",
    "lng",
    "long",
    "latitude",
    "longitude",
    "type",
    "postcode",
    "citycode",
];

/// Status and plain body of an answer.
fn answer(app: &App, route: Route, path: &str, query: Option<&str>, enc: Encoding) -> (u16, Vec<u8>) {
    let resp = app.get(route, path, query, enc);
    let status = resp.status().as_u16();
    assert!(matches!(status, 200 | 400 | 404 | 413 | 503), "{path}?{query:?}: status {status}");
    let coding = resp.headers().get(hyper::header::CONTENT_ENCODING).map(|v| v.to_str().unwrap().to_owned());
    // Full bodies are ready at the first poll.
    let mut collect = std::pin::pin!(resp.into_body().collect());
    let Poll::Ready(Ok(body)) = collect.as_mut().poll(&mut Context::from_waker(Waker::noop())) else {
        panic!("body not ready");
    };
    let raw = body.to_bytes();
    let mut plain = Vec::new();
    match coding.as_deref() {
        None => plain.extend_from_slice(&raw),
        Some("gzip") => {
            flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut plain).expect("gzip body");
        }
        Some("br") => {
            brotli::Decompressor::new(&raw[..], 4096).read_to_end(&mut plain).expect("brotli body");
        }
        Some(c) => panic!("unknown coding {c}"),
    }
    if route == Route::Metrics {
        assert!(std::str::from_utf8(&plain).is_ok());
    } else {
        let v: serde_json::Value = serde_json::from_slice(&plain).unwrap_or_else(|e| {
            panic!("{path}?{query:?}: body is not JSON ({e}): {:?}", String::from_utf8_lossy(&plain))
        });
        if status != 200 {
            assert!(v.get("title").is_some() || v.get("status").is_some(), "{v}");
        }
    }
    (status, plain)
}

/// The answer of the cached app, checked against the uncached one.
fn check_cached(route: Route, path: &str, query: Option<&str>, enc: Encoding) {
    let (status, body) = answer(app(), route, path, query, enc);
    let (want_status, want) = answer(uncached(), route, path, query, enc);
    // Over the time budget on one side only: nothing to compare.
    if status == 503 || want_status == 503 {
        return;
    }
    assert_eq!(
        (status, String::from_utf8_lossy(&body)),
        (want_status, String::from_utf8_lossy(&want)),
        "{path}?{query:?}: the cache answered otherwise"
    );
}

/// The id `/get/{raw}` names: `raw` with its `%XX` escapes decoded and
/// nothing else, or `None` when an escape is broken or the bytes are not
/// UTF-8. Written apart from the server's decoder, to check it.
fn path_id(raw: &str) -> Option<String> {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn check_get(path: &str, enc: Encoding) {
    let (status, body) = answer(app(), Route::Get, path, None, enc);
    let raw = path.trim_end_matches('/').strip_prefix("/get/").unwrap_or("");
    let Some(id) = path_id(raw) else {
        assert_eq!(status, 400, "{path:?} does not decode");
        return;
    };
    let found = small_db().get(&id).expect("the fixture reads").is_some();
    assert_eq!(status, if found { 200 } else { 404 }, "{path:?} is the id {id:?}");
    if found {
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(v["properties"]["id"].as_str(), Some(id.as_str()), "{path:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut head = Bytes(data);
    let sel = head.u8();
    let (route, base) = ROUTES[usize::from(sel & 7) % ROUTES.len()];
    let enc = [Encoding::Identity, Encoding::Gzip, Encoding::Brotli, Encoding::Identity][usize::from(sel >> 3 & 3)];
    // Repeat mode: one more byte names the parameter, and the rest is the
    // query, the first value and the second, cut at newlines.
    let repeated = (sel & 0x40 != 0).then(|| REPEATED[usize::from(head.u8()) % REPEATED.len()]);
    let rest = String::from_utf8_lossy(head.0);
    match route {
        Route::Get => check_get(&format!("{base}{rest}"), enc),
        Route::Search | Route::Reverse => match repeated {
            Some(name) => {
                let mut parts = rest.splitn(3, '\n');
                let (query, a, b) =
                    (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                for (first, second) in [(a, b), (b, a)] {
                    let q = format!("{query}&{name}={first}&{name}={second}");
                    check_cached(route, base, Some(&q), enc);
                }
            }
            None if sel & 0x20 != 0 => check_cached(route, base, None, enc),
            None => check_cached(route, base, Some(&rest), enc),
        },
        _ => {
            let query = (sel & 0x20 == 0).then_some(&*rest);
            answer(app(), route, base, query, enc);
        }
    }
});
