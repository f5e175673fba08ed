//! Single-thread engine time of a file of load-bench requests, for profiling
//! the search path without HTTP or load generator:
//!
//!     qtime [--app] DB REQUESTS [N]
//!
//! With `--app`, each line goes through the server's GET handler instead
//! (parameters, response cache, engine, `GeoJSON`), still without a socket:
//! the difference to the plain run is the front end's own cost.
//!
//! REQUESTS is one of bench/load.sh's request files (`/search?q=...` or
//! `/reverse?lat=..&lon=..` lines; other routes are skipped). Runs the N
//! requests after the first N (default 20,000) to warm the page cache, then
//! the first N timed, and prints the mean and the percentiles of one
//! request, in microseconds. The two sets are disjoint, as in the load bench,
//! so that the engine's own memo of costly word sets only helps a timed
//! request that shares its words with another. `QTIME_SLOW=K` also prints the
//! K slowest requests.

use std::time::Instant;

use cairn::{Database, Point, ReverseQuery, SearchQuery};
use cairn_bench::unescape;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

enum Request {
    Search(SearchQuery),
    Reverse(ReverseQuery),
}

impl Request {
    fn run(&self, db: &Database) -> usize {
        match self {
            Request::Search(q) => db.search(q).map_or(0, |r| r.len()),
            Request::Reverse(q) => db.reverse(q).map_or(0, |r| r.len()),
        }
    }
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Search(q) => write!(f, "{:?} autocomplete={}", q.q, q.autocomplete),
            Request::Reverse(q) => write!(f, "reverse {} {}", q.at.lat, q.at.lon),
        }
    }
}

fn request_of(line: &str) -> Option<Request> {
    if let Some(params) = line.strip_prefix("/reverse?") {
        let (mut lat, mut lon) = (f64::NAN, f64::NAN);
        for kv in params.split('&') {
            match kv.split_once('=') {
                Some(("lat", v)) => lat = v.parse().ok()?,
                Some(("lon", v)) => lon = v.parse().ok()?,
                _ => {}
            }
        }
        return Some(Request::Reverse(ReverseQuery { at: Point { lat, lon }, limit: 1, filters: Vec::new() }));
    }
    query_of(line).map(Request::Search)
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
    let mut args: Vec<String> = std::env::args().collect();
    let app_mode = args.get(1).is_some_and(|a| a == "--app");
    if app_mode {
        args.remove(1);
    }
    if args.len() < 3 {
        eprintln!("usage: qtime [--app] DB REQUESTS [N]");
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
    if app_mode {
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with('/')).take(n).collect();
        return time_app(db, &lines);
    }
    let mut queries: Vec<Request> = text.lines().filter_map(request_of).take(2 * n).collect();
    let warm = queries.split_off(n.min(queries.len()));
    if queries.is_empty() {
        eprintln!("qtime: no /search or /reverse lines in {}", args[2]);
        std::process::exit(1);
    }
    for q in &warm {
        q.run(&db);
    }
    let mut times = Vec::with_capacity(queries.len());
    let mut found = 0usize;
    let start = Instant::now();
    for q in &queries {
        let t = Instant::now();
        found += q.run(&db);
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let total = start.elapsed().as_secs_f64();
    // QTIME_DUMP=FILE writes each request's result ids and scores, to
    // compare two builds' answers.
    if let Some(path) = std::env::var_os("QTIME_DUMP") {
        let mut out = String::new();
        for q in &queries {
            let features = match q {
                Request::Search(s) => db.search(s).unwrap_or_default(),
                Request::Reverse(r) => db.reverse(r).unwrap_or_default(),
            };
            let ids: Vec<String> =
                features.iter().map(|f| format!("{}:{:.6}", f.prop_str("id").unwrap_or("?"), f.score)).collect();
            out.push_str(&format!("{q}\t{}\n", ids.join(" ")));
        }
        if let Err(e) = std::fs::write(&path, out) {
            eprintln!("qtime: {}: {e}", path.to_string_lossy());
            std::process::exit(1);
        }
    }
    // QTIME_SLOW=K prints the K slowest queries.
    if let Some(k) = std::env::var("QTIME_SLOW").ok().and_then(|v| v.parse::<usize>().ok()) {
        let mut order: Vec<usize> = (0..times.len()).collect();
        order.sort_by(|a, b| times[*b].total_cmp(&times[*a]));
        for &i in order.iter().take(k) {
            println!("{:8.0} µs  {}", times[i], queries[i]);
        }
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    println!(
        "{} requests ({} results): mean {:.0} µs, p50 {:.0}, p90 {:.0}, p99 {:.0}, p99.9 {:.0}, max {:.0}",
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

/// The server's handler over request targets, one thread, default limits
/// and cache: the first pass fills the cache as a first visit would, so it
/// is timed with a fresh cache, then the second (all hits) is timed too.
fn time_app(db: Database, lines: &[&str]) {
    use cairn_server::compress::Encoding;
    use cairn_server::config::Limits;
    use cairn_server::http::App;
    use cairn_server::metrics::Route;
    let app = App::new(
        std::sync::Arc::new(db),
        Some(cairn::ResponseCache::new(cairn::CacheConfig::default())),
        Limits::default(),
    );
    let run = |label: &str| {
        let start = Instant::now();
        let mut ok = 0usize;
        for l in lines {
            let (path, query) = l.split_once('?').unwrap_or((l, ""));
            let r = app.get(Route::of(path), path, Some(query), Encoding::Identity);
            ok += usize::from(r.status().is_success());
        }
        let t = start.elapsed().as_secs_f64();
        println!("{label}: {} requests ({ok} answered 2xx), mean {:.1} µs", lines.len(), t * 1e6 / lines.len() as f64);
    };
    run("misses");
    run("hits");
}
