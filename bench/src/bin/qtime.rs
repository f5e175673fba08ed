//! Single-thread engine time of a file of load-bench requests, for profiling
//! the search path without HTTP or load generator:
//!
//!     qtime DB REQUESTS [N]
//!
//! REQUESTS is one of bench/load.sh's request files (`/search?q=...` lines;
//! other routes are skipped). Runs the first N searches (default 20,000)
//! once to warm the page cache, then again timed, and prints the mean and
//! the percentiles of one search, in microseconds. QTIME_SLOW=K also
//! prints the K slowest queries.

use std::time::Instant;

use cairn::{Database, SearchQuery};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_of(line: &str) -> Option<SearchQuery> {
    let params = line.strip_prefix("/search?")?;
    let mut q = SearchQuery::new("");
    for kv in params.split('&') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "q" => q.q = unescape(v),
            "autocomplete" => q.autocomplete = v == "1" || v == "true",
            "limit" => q.limit = v.parse().unwrap_or(5),
            _ => {}
        }
    }
    Some(q)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: qtime DB REQUESTS [N]");
        std::process::exit(2);
    }
    let n: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let db = Database::open_read_only(&args[1]).unwrap_or_else(|e| {
        eprintln!("qtime: {e}");
        std::process::exit(1)
    });
    let text = std::fs::read_to_string(&args[2]).unwrap_or_else(|e| {
        eprintln!("qtime: {}: {e}", args[2]);
        std::process::exit(1)
    });
    let queries: Vec<SearchQuery> = text.lines().filter_map(query_of).take(n).collect();
    let mut found = 0usize;
    for q in &queries {
        found += db.search(q).map(|r| r.len()).unwrap_or(0);
    }
    let mut times = Vec::with_capacity(queries.len());
    let start = Instant::now();
    for q in &queries {
        let t = Instant::now();
        let _ = db.search(q);
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    // QTIME_SLOW=K prints the K slowest queries.
    if let Some(k) = std::env::var("QTIME_SLOW").ok().and_then(|v| v.parse::<usize>().ok()) {
        let mut order: Vec<usize> = (0..times.len()).collect();
        order.sort_by(|a, b| times[*b].total_cmp(&times[*a]));
        for &i in order.iter().take(k) {
            println!("{:8.0} µs  {:?} autocomplete={}", times[i], queries[i].q, queries[i].autocomplete);
        }
    }
    let total = start.elapsed().as_secs_f64();
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    println!(
        "{} searches ({} results): mean {:.0} µs, p50 {:.0}, p90 {:.0}, p99 {:.0}, p99.9 {:.0}, max {:.0}",
        queries.len(),
        found,
        total * 1e6 / queries.len() as f64,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(0.999),
        times[times.len() - 1]
    );
}
