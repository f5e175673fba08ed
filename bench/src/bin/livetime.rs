//! Live writes measured in process on a database (issue 19): each write a
//! new street with its housenumbers, committed with `write_live` (or with
//! `write`, a full commit, for comparison), then searched for until found.
//!
//!   livetime DIR latency N [full]     N writes one after the other
//!   livetime DIR stream RATE SECONDS  16 writers at RATE writes/s in all
//!                                     (`write_grouped`), 2 threads
//!                                     searching meanwhile
//!
//! Prints one `RESULT` line per figure: write latency (the call, fsync
//! included), time from the write's return until a search finds it, and,
//! for `stream`, search latency idle and under the writes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::{Database, Format, OnError, SearchQuery, Skipped};

// The server's allocator: a layer's tantivy arena is allocated per commit.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WORDS: [&str; 12] = [
    "Zephyr",
    "Quillon",
    "Brisach",
    "Orvalle",
    "Taverny",
    "Mirecourt",
    "Lunel",
    "Vauclair",
    "Sernon",
    "Pradel",
    "Ostrich",
    "Valmy",
];

/// A street no database has, with `n` housenumbers, and a query that finds it.
fn street(i: u64, n: u64) -> (String, String) {
    let name = format!("Rue {} {} {i}", WORDS[(i % 12) as usize], WORDS[((i / 12) % 12) as usize]);
    let lon = 2.0 + (i % 1000) as f64 * 0.001;
    let lat = 46.0 + (i / 1000 % 1000) as f64 * 0.001;
    let numbers: Vec<String> =
        (1..=n).map(|h| format!(r#""{h}": {{"lon": {}, "lat": {}}}"#, lon + h as f64 * 1e-5, lat)).collect();
    let line = format!(
        r#"{{"id": "live_{i}", "type": "street", "name": "{name}", "postcode": "99000", "citycode": "99999", "city": "Livetown", "lon": {lon}, "lat": {lat}, "importance": 0.5, "housenumbers": {{{}}}}}"#,
        numbers.join(", ")
    );
    (line, format!("1 {name} livetown"))
}

fn put(db: &Database, line: &str, full: bool) -> cairn::Result<()> {
    let f = |b: &mut cairn::Batch| b.import(line.as_bytes(), Format::BanNdjson, OnError::Fail, &mut Skipped::default());
    if full {
        db.write(f).map(|_| ())
    } else {
        db.write_live(f).map(|_| ())
    }
}

fn found(db: &Database, q: &str, id: &str) -> bool {
    db.search(&SearchQuery::new(q))
        .is_ok_and(|f| f.first().and_then(|f| f.prop_str("id")).is_some_and(|i| i.starts_with(id)))
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn report(name: &str, v: &mut [f64]) {
    let (p50, p99, max) = (percentile(v, 0.5), percentile(v, 0.99), percentile(v, 1.0));
    println!("RESULT {name} n={} p50={p50:.2}ms p99={p99:.2}ms max={max:.2}ms", v.len());
}

fn latency(db: &Database, n: u64, full: bool) {
    let (mut write, mut visible) = (Vec::new(), Vec::new());
    let first = 1_000_000 + u64::from(std::process::id()) * 10_000;
    for i in first..first + n {
        let (line, q) = street(i, 1 + i % 10);
        let t = Instant::now();
        if let Err(e) = put(db, &line, full) {
            println!("error: {e}");
            std::process::exit(1);
        }
        write.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        while !found(db, &q, &format!("live_{i}")) {
            if t.elapsed() > Duration::from_mins(1) {
                println!("error: live_{i} not found after 60 s");
                std::process::exit(1);
            }
        }
        visible.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mode = if full { "full" } else { "live" };
    report(&format!("{mode}.write"), &mut write);
    report(&format!("{mode}.visible_after_return"), &mut visible);
}

/// Searches for the queries of `queries` round robin until `stop`.
fn searching(db: Arc<Database>, queries: Arc<Vec<String>>, stop: Arc<AtomicBool>, seed: usize) -> Vec<f64> {
    let mut out = Vec::new();
    let mut i = seed;
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let _ = db.search(&SearchQuery::new(queries[i % queries.len()].as_str()));
        out.push(t.elapsed().as_secs_f64() * 1e3);
        i += 7;
    }
    out
}

fn stream(db: Arc<Database>, rate: f64, seconds: u64) {
    // A load-bench request file (`/search?q=...` lines), as LIVETIME_QUERIES.
    let file = std::env::var("LIVETIME_QUERIES").unwrap_or_default();
    let queries: Arc<Vec<String>> = Arc::new(
        std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("/search?q="))
            .map(|l| cairn_bench::unescape(l.split('&').next().unwrap_or("")))
            .filter(|l| !l.is_empty())
            .collect(),
    );
    let queries = if queries.is_empty() { Arc::new(vec!["12 rue de la paix paris".to_owned()]) } else { queries };
    // Threads searching without pause (LIVETIME_SEARCHERS, default 2).
    let searchers: usize = std::env::var("LIVETIME_SEARCHERS").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    let phase = |writers: usize| {
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..searchers)
            .map(|s| {
                let (db, q, stop) = (db.clone(), queries.clone(), stop.clone());
                std::thread::spawn(move || searching(db, q, stop, s))
            })
            .collect();
        let next = Arc::new(AtomicU64::new(2_000_000 + u64::from(std::process::id()) * 100_000));
        let started = Instant::now();
        let writers: Vec<_> = (0..writers)
            .map(|w| {
                let (db, stop, next) = (db.clone(), stop.clone(), next.clone());
                let every = Duration::from_secs_f64(16.0 / rate);
                std::thread::spawn(move || {
                    let mut lat = Vec::new();
                    let mut due = started + every.mul_f64(w as f64 / 16.0);
                    while !stop.load(Ordering::Relaxed) {
                        let now = Instant::now();
                        if now < due {
                            std::thread::sleep(due - now);
                        }
                        due += every;
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let (line, _) = street(i, 1);
                        let t = Instant::now();
                        let import = move |b: &mut cairn::Batch| {
                            b.import(line.as_bytes(), Format::BanNdjson, OnError::Fail, &mut Skipped::default())
                        };
                        if db.write_grouped(import).is_err() {
                            continue;
                        }
                        lat.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    lat
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
        let mut writes: Vec<f64> = writers.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect();
        let mut searches: Vec<f64> = readers.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect();
        (
            writes.len() as f64 / started.elapsed().as_secs_f64(),
            std::mem::take(&mut writes),
            std::mem::take(&mut searches),
        )
    };
    let (_, _, mut idle) = phase(0);
    report("stream.search_idle", &mut idle);
    let (achieved, mut writes, mut busy) = phase(16);
    println!("RESULT stream.writes_per_s {achieved:.0} (asked {rate})");
    report("stream.write", &mut writes);
    report("stream.search_under_writes", &mut busy);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        println!("usage: livetime DIR latency N [full] | livetime DIR stream RATE SECONDS");
        std::process::exit(2);
    }
    let db = match Database::open(&args[1]) {
        Ok(db) => Arc::new(db),
        Err(e) => {
            println!("error: {e}");
            std::process::exit(1);
        }
    };
    println!("RESULT documents {}", db.len());
    db.merge_in_background();
    match args[2].as_str() {
        "latency" => latency(&db, args[3].parse().unwrap_or(100), args.get(4).is_some_and(|a| a == "full")),
        "stream" => {
            stream(db, args[3].parse().unwrap_or(100.0), args.get(4).and_then(|s| s.parse().ok()).unwrap_or(30));
        }
        _ => {
            println!("usage: livetime DIR latency N [full] | livetime DIR stream RATE SECONDS");
            std::process::exit(2);
        }
    }
}
