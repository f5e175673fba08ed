//! In-process latency of collection queries (issue 17's figures): opens a
//! database, runs seeded random queries of each kind and prints the
//! percentiles of their wall time, one line per kind.
//!
//!   colltime DIR verifications [QUERIES]   (collection "checks", 1M records of
//!                                          `datasets/generate_records.py` --kind verifications)
//!   colltime DIR packets [QUERIES]         (collection "packets")

use std::time::{Duration, Instant};

use cairn::collection::{Filter, Query, SortKey};
use serde_json::json;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// xorshift64*, seeded: the same queries on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn report(name: &str, mut times: Vec<Duration>, hits: usize) {
    times.sort();
    let p = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "{name:<44} n={:<6} p50 {:>7.3} ms  p90 {:>7.3}  p99 {:>7.3}  p99.9 {:>7.3}  max {:>7.3}  (hits {hits})",
        times.len(),
        p(0.5),
        p(0.9),
        p(0.99),
        p(0.999),
        p(1.0)
    );
}

fn time(name: &str, n: usize, mut make: impl FnMut(usize) -> Query, run: &dyn Fn(&Query) -> usize) {
    // Warm-up: the first queries page in the store.
    for i in 0..n.min(200) {
        run(&make(i));
    }
    let mut times = Vec::with_capacity(n);
    let mut hits = 0;
    for i in 0..n {
        let q = make(i);
        let t = Instant::now();
        hits += run(&q);
        times.push(t.elapsed());
    }
    report(name, times, hits);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: colltime DIR verifications|packets [QUERIES]");
        std::process::exit(2);
    }
    let n: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let opened = Instant::now();
    let db = cairn::Database::open(&args[1]).unwrap_or_else(|e| {
        eprintln!("{}: {e}", args[1]);
        std::process::exit(1)
    });
    println!("open: {:.2} s", opened.elapsed().as_secs_f64());
    let mut rng = Rng(42);
    match args[2].as_str() {
        "verifications" => verifications(&db, n, &mut rng),
        "packets" => packets(&db, n, &mut rng),
        k => {
            eprintln!("unknown kind {k}");
            std::process::exit(2);
        }
    }
}

const STATUSES: [&str; 4] = ["verified", "pending", "rejected", "expired"];
/// 2025-01-01T00:00:00Z .. the generator's end, 2026-12-01.
const T0: i64 = 1_735_689_600;
const DAYS: u64 = 690;

fn verifications(db: &cairn::Database, n: usize, rng: &mut Rng) {
    let c = db.collection("checks").expect("collection checks");
    let run = |q: &Query| c.query_raw(q).expect("query").1.len();
    let mut window = |days: i64| {
        let t1 = T0 + 86_400 * rng.below(DAYS) as i64;
        let status = STATUSES[rng.below(4) as usize];
        Query {
            filter: Filter::And(vec![
                Filter::Terms { field: "status".into(), values: vec![json!(status)] },
                Filter::Range {
                    field: "created_at".into(),
                    lower: std::ops::Bound::Included(json!(t1)),
                    upper: std::ops::Bound::Excluded(json!(t1 + 86_400 * days)),
                },
            ]),
            sort: vec![SortKey { field: "created_at".into(), descending: true }],
            limit: 50,
            ..Query::default()
        }
    };
    let week: Vec<Query> = (0..n).map(|_| window(7)).collect();
    time("status + created_at week, desc, limit 50", n, |i| week[i].clone(), &run);
    let year: Vec<Query> = (0..n).map(|_| window(365)).collect();
    time("status + created_at year, desc, limit 50", n, |i| year[i].clone(), &run);
    let facets =
        |filter: Filter| Query { filter, facets: vec!["status".into(), "source".into()], limit: 0, ..Query::default() };
    time("facets status+source, all 1M", 50, |_| facets(Filter::All), &run);
    time(
        "facets status+source, source=manual",
        50,
        |_| facets(Filter::Terms { field: "source".into(), values: vec![json!("manual")] }),
        &run,
    );
    time(
        "collapse business_id, week, desc, limit 50",
        n / 4,
        |i| Query { collapse: Some("business_id".into()), ..week[i].clone() },
        &run,
    );
    time(
        "text 'warehouse capital', limit 20",
        200,
        |_| Query { text: Some("warehouse capital".into()), ..Query::default() },
        &run,
    );

    // Paging 100k hits with the cursor: each exactly once.
    let started = Instant::now();
    let mut q = Query {
        filter: Filter::Terms { field: "status".into(), values: vec![json!("verified")] },
        sort: vec![SortKey { field: "created_at".into(), descending: true }],
        limit: 1000,
        ..Query::default()
    };
    let mut seen = std::collections::HashSet::new();
    let mut pages = 0;
    while seen.len() < 100_000 {
        let r = c.query(&q).expect("page");
        pages += 1;
        for h in r.hits {
            assert!(seen.insert(h.id), "a hit came twice");
        }
        match r.next_cursor {
            Some(cur) => q.cursor = Some(cur),
            None => break,
        }
    }
    println!(
        "cursor paging: {} distinct hits in {pages} pages of 1000, {:.1} ms in all",
        seen.len(),
        started.elapsed().as_secs_f64() * 1e3
    );
}

fn packets(db: &cairn::Database, n: usize, rng: &mut Rng) {
    let c = db.collection("packets").expect("collection packets");
    let run = |q: &Query| c.query_raw(q).expect("query").1.len();
    // The generator's packets span 30 days up to 2026-12-01T00:00:00Z.
    let end = 1_796_083_200i64;
    let mut make = |collapse: bool| {
        let lat = 43.0 + rng.below(700) as f64 / 100.0;
        let lon = -4.0 + rng.below(1100) as f64 / 100.0;
        let hour = end - 3600 * rng.below(24 * 29) as i64;
        Query {
            filter: Filter::And(vec![
                Filter::BBox { field: "position".into(), west: lon, south: lat, east: lon + 1.0, north: lat + 1.0 },
                Filter::Range {
                    field: "received_at".into(),
                    lower: std::ops::Bound::Included(json!(if collapse { hour - 86_400 } else { hour - 3600 })),
                    upper: std::ops::Bound::Excluded(json!(hour)),
                },
            ]),
            sort: vec![SortKey { field: "received_at".into(), descending: true }],
            limit: 100,
            collapse: collapse.then(|| "sender".into()),
            ..Query::default()
        }
    };
    let last_hour: Vec<Query> = (0..n).map(|_| make(false)).collect();
    time("bbox 1x1 deg + last hour, newest first, 100", n, |i| last_hour[i].clone(), &run);
    let latest: Vec<Query> = (0..n / 4).map(|_| make(true)).collect();
    time("latest of each sender, bbox + last day, 100", n / 4, |i| latest[i].clone(), &run);
}
