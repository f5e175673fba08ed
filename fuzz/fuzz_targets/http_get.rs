//! The GET routes of the HTTP front end (`App::get`, what the server runs
//! for them after its limits) with a fuzzed query string or path: never a
//! 500, and every body is JSON (but /metrics, which is text).
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

const ROUTES: [(Route, &str); 6] = [
    (Route::Search, "/search"),
    (Route::Reverse, "/reverse"),
    (Route::Get, "/get/"),
    (Route::Health, "/health"),
    (Route::Ready, "/health/ready"),
    (Route::Metrics, "/metrics"),
];

fuzz_target!(|data: &[u8]| {
    let mut head = Bytes(data);
    let sel = head.u8();
    let (route, base) = ROUTES[usize::from(sel & 7) % ROUTES.len()];
    let enc = [Encoding::Identity, Encoding::Gzip, Encoding::Brotli, Encoding::Identity][usize::from(sel >> 3 & 3)];
    let rest = String::from_utf8_lossy(head.0);
    let (path, query) = match route {
        Route::Get => (format!("{base}{rest}"), None),
        _ if sel & 0x20 != 0 => (base.to_owned(), None),
        _ => (base.to_owned(), Some(&*rest)),
    };
    let resp = app().get(route, &path, query, enc);
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
        let v: serde_json::Value = serde_json::from_slice(&plain)
            .unwrap_or_else(|e| panic!("{path}?{query:?}: body is not JSON ({e}): {:?}", String::from_utf8_lossy(&plain)));
        if status != 200 {
            assert!(v.get("title").is_some() || v.get("status").is_some(), "{v}");
        }
    }
});
