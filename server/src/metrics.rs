//! Request counters and latency histograms, exported in Prometheus' text
//! format by `/metrics`.
//!
//! Routes and statuses are a small fixed set, so every series is an atomic
//! in a fixed array: recording a request is three relaxed additions, no map
//! lookup and no lock (a metrics crate's labelled families pay both on each
//! request).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The routes requests are counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Search,
    Reverse,
    SearchCsv,
    ReverseCsv,
    Get,
    Health,
    Ready,
    Metrics,
    Documents,
    Snapshot,
    Collections,
    Other,
}

impl Route {
    const ALL: [Route; 12] = [
        Route::Search,
        Route::Reverse,
        Route::SearchCsv,
        Route::ReverseCsv,
        Route::Get,
        Route::Health,
        Route::Ready,
        Route::Metrics,
        Route::Documents,
        Route::Snapshot,
        Route::Collections,
        Route::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Route::Search => "/search",
            Route::Reverse => "/reverse",
            Route::SearchCsv => "/search/csv",
            Route::ReverseCsv => "/reverse/csv",
            Route::Get => "/get",
            Route::Health => "/health",
            Route::Ready => "/health/ready",
            Route::Metrics => "/metrics",
            Route::Documents => "/documents",
            Route::Snapshot => "/snapshot",
            Route::Collections => "/collections",
            Route::Other => "other",
        }
    }

    /// The route a path belongs to (a trailing slash is the same route).
    pub fn of(path: &str) -> Route {
        let p = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
        match p {
            "/search" => Route::Search,
            "/reverse" => Route::Reverse,
            "/search/csv" => Route::SearchCsv,
            "/reverse/csv" => Route::ReverseCsv,
            "/health" => Route::Health,
            "/health/ready" => Route::Ready,
            "/metrics" => Route::Metrics,
            "/documents" => Route::Documents,
            _ if p.starts_with("/get/") => Route::Get,
            _ if p.starts_with("/documents/") => Route::Documents,
            _ if p.starts_with("/snapshot/") => Route::Snapshot,
            "/collections" => Route::Collections,
            _ if p.starts_with("/collections/") => Route::Collections,
            _ => Route::Other,
        }
    }
}

const STATUSES: [u16; 18] = [200, 201, 204, 400, 401, 403, 404, 405, 408, 409, 413, 414, 415, 429, 431, 500, 503, 0];
/// Upper bounds of the latency buckets, in microseconds.
const BUCKETS_US: [u64; 14] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000];

// One route's series on cache lines of their own: the two cores update
// different routes without bouncing a shared line.
#[repr(align(128))]
#[derive(Default)]
struct RouteSeries {
    by_status: [AtomicU64; STATUSES.len()],
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

/// Counters of every request the server answered.
pub struct Metrics {
    routes: [RouteSeries; Route::ALL.len()],
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics { routes: std::array::from_fn(|_| RouteSeries::default()) }
    }
}

/// Values that are read, not counted, when `/metrics` is asked.
pub struct Gauges {
    pub documents: u64,
    pub generation: u64,
    pub cache: Option<cairn::CacheStats>,
    pub extra: Vec<(&'static str, &'static str, f64)>,
}

impl Metrics {
    pub fn record(&self, route: Route, status: u16, elapsed: Duration) {
        self.count(route, status);
        let s = &self.routes[route as usize];
        let us = elapsed.as_micros().min(u128::from(u64::MAX)) as u64;
        let b = BUCKETS_US.iter().position(|&le| us <= le).unwrap_or(BUCKETS_US.len());
        s.buckets[b].fetch_add(1, Relaxed);
        s.sum_us.fetch_add(us, Relaxed);
    }

    /// Counts a request in `cairn_requests_total` only: for one that hyper
    /// refused before reading its head (431), with no time to put in the
    /// latency histogram.
    pub fn count(&self, route: Route, status: u16) {
        let i = STATUSES.iter().position(|&c| c == status).unwrap_or(STATUSES.len() - 1);
        self.routes[route as usize].by_status[i].fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::with_capacity(16 * 1024);
        out.push_str("# HELP cairn_requests_total Requests answered, by route and status.\n");
        out.push_str("# TYPE cairn_requests_total counter\n");
        for r in Route::ALL {
            let s = &self.routes[r as usize];
            for (i, code) in STATUSES.iter().enumerate() {
                let n = s.by_status[i].load(Relaxed);
                if n > 0 {
                    let code = if *code == 0 { "other".to_owned() } else { code.to_string() };
                    let _ = writeln!(out, "cairn_requests_total{{route=\"{}\",status=\"{code}\"}} {n}", r.name());
                }
            }
        }
        out.push_str("# HELP cairn_request_duration_seconds Time from request head to response head, by route.\n");
        out.push_str("# TYPE cairn_request_duration_seconds histogram\n");
        for r in Route::ALL {
            let s = &self.routes[r as usize];
            let counts: Vec<u64> = s.buckets.iter().map(|b| b.load(Relaxed)).collect();
            let total: u64 = counts.iter().sum();
            if total == 0 {
                continue;
            }
            let mut cumulative = 0;
            for (i, n) in counts.iter().enumerate() {
                cumulative += n;
                let le = BUCKETS_US.get(i).map_or("+Inf".to_owned(), |us| format!("{}", *us as f64 / 1e6));
                let _ = writeln!(
                    out,
                    "cairn_request_duration_seconds_bucket{{route=\"{}\",le=\"{le}\"}} {cumulative}",
                    r.name()
                );
            }
            let sum = s.sum_us.load(Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "cairn_request_duration_seconds_sum{{route=\"{}\"}} {sum}", r.name());
            let _ = writeln!(out, "cairn_request_duration_seconds_count{{route=\"{}\"}} {total}", r.name());
        }
        let mut gauge = |name: &str, kind: &str, help: &str, v: f64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        gauge("cairn_documents", "gauge", "Documents in the generation being served.", g.documents as f64);
        gauge("cairn_generation", "gauge", "Number of the generation being served.", g.generation as f64);
        if let Some(c) = &g.cache {
            gauge("cairn_cache_hits_total", "counter", "Response cache hits.", c.hits as f64);
            gauge("cairn_cache_misses_total", "counter", "Response cache misses.", c.misses as f64);
            gauge("cairn_cache_evictions_total", "counter", "Responses evicted from the cache.", c.evictions as f64);
            gauge("cairn_cache_entries", "gauge", "Responses in the cache.", c.entries as f64);
            gauge("cairn_cache_bytes", "gauge", "Bytes of responses in the cache.", c.bytes as f64);
        }
        if let Some(rss) = resident_bytes() {
            gauge("process_resident_memory_bytes", "gauge", "Resident memory of the process.", rss as f64);
        }
        for (name, help, v) in &g.extra {
            gauge(name, if name.ends_with("_total") { "counter" } else { "gauge" }, help, *v);
        }
        out
    }
}

/// Resident set size from /proc (Linux); absent elsewhere.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_counts_add_up() {
        let m = Metrics::default();
        m.record(Route::Search, 200, Duration::from_micros(80));
        m.record(Route::Search, 200, Duration::from_millis(3));
        m.record(Route::Search, 503, Duration::from_secs(5));
        let text = m.render(&Gauges { documents: 3, generation: 1, cache: None, extra: vec![] });
        assert!(text.contains("cairn_requests_total{route=\"/search\",status=\"200\"} 2\n"), "{text}");
        assert!(text.contains("cairn_requests_total{route=\"/search\",status=\"503\"} 1\n"));
        assert!(text.contains("cairn_request_duration_seconds_bucket{route=\"/search\",le=\"0.0001\"} 1\n"));
        assert!(text.contains("cairn_request_duration_seconds_bucket{route=\"/search\",le=\"0.005\"} 2\n"));
        assert!(text.contains("cairn_request_duration_seconds_bucket{route=\"/search\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("cairn_request_duration_seconds_count{route=\"/search\"} 3\n"));
        assert!(!text.contains("route=\"/reverse\""), "routes without requests are left out");
        m.count(Route::Other, 431);
        let text = m.render(&Gauges { documents: 3, generation: 1, cache: None, extra: vec![] });
        assert!(text.contains("cairn_requests_total{route=\"other\",status=\"431\"} 1\n"), "{text}");
        assert!(!text.contains("cairn_request_duration_seconds_count{route=\"other\"}"), "counted, not timed");
    }
}
