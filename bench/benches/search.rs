//! Single-thread latency of the engine's hot paths, by query shape.
//!
//! By default it imports the bundled fr-sample into a temporary database.
//! For the 1M figures (see `bench/spine.sh`):
//!   `CAIRN_BENCH_DATA=DIR` `CAIRN_BENCH_SOURCE=FILE.ndjson` cargo bench -p cairn-bench
//! where DIR was imported from FILE.

use std::io::BufRead;
use std::path::PathBuf;

use cairn::{Database, ImportOptions, Point, ReverseQuery, SearchQuery};
use criterion::{criterion_group, criterion_main, Criterion};

struct Sample {
    full: Vec<String>,
    no_postcode: Vec<String>,
    prefix: Vec<String>,
    typo: Vec<String>,
    street_city: Vec<String>,
    city: Vec<String>,
    points: Vec<Point>,
}

fn str_of(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Array(a) => a.first().and_then(|s| s.as_str()).unwrap_or("").to_owned(),
        v => v.as_str().unwrap_or("").to_owned(),
    }
}

/// Builds queries from the source file: streets with a housenumber, cities.
fn sample(source: &std::path::Path, n: usize) -> Sample {
    let input = cairn::import::open_input(source, |_| {}).expect("open source");
    let mut s = Sample {
        full: vec![],
        no_postcode: vec![],
        prefix: vec![],
        typo: vec![],
        street_city: vec![],
        city: vec![],
        points: vec![],
    };
    for (i, line) in input.lines().enumerate() {
        let Ok(line) = line else { break };
        let Ok(doc) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        let name = str_of(&doc["name"]);
        let city = str_of(&doc["city"]);
        match doc["type"].as_str() {
            Some("municipality") if s.city.len() < n => s.city.push(city),
            Some("street") if s.full.len() < n && i % 3 == 0 => {
                let Some((num, hn)) = doc["housenumbers"].as_object().and_then(|h| h.iter().next()) else { continue };
                let pc = str_of(&doc["postcode"]);
                s.full.push(format!("{num} {name} {pc} {city}"));
                s.no_postcode.push(format!("{num} {name} {city}"));
                let full = format!("{num} {name} {city}");
                let cut = full.char_indices().nth(full.chars().count() * 2 / 3).map_or(full.len(), |(i, _)| i);
                s.prefix.push(full[..cut].to_owned());
                // Swap two letters inside the longest word.
                let mut words: Vec<String> = name.split(' ').map(str::to_owned).collect();
                if let Some(w) = words.iter_mut().max_by_key(|w| w.len()) {
                    let mut c: Vec<char> = w.chars().collect();
                    if c.len() > 4 {
                        c.swap(2, 3);
                        *w = c.into_iter().collect();
                    }
                }
                s.typo.push(format!("{num} {} {city}", words.join(" ")).to_lowercase());
                s.street_city.push(format!("{name} {city}"));
                if let (Some(lat), Some(lon)) = (hn["lat"].as_f64(), hn["lon"].as_f64()) {
                    s.points.push(Point { lat: lat + 0.0001, lon: lon - 0.0001 });
                }
            }
            _ => {}
        }
        if s.full.len() >= n && s.city.len() >= n {
            break;
        }
    }
    s
}

fn bench(c: &mut Criterion) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let (_tmp, data, source) =
        if let (Some(d), Some(s)) = (std::env::var_os("CAIRN_BENCH_DATA"), std::env::var_os("CAIRN_BENCH_SOURCE")) {
            (None, PathBuf::from(d), PathBuf::from(s))
        } else {
            let source = root.join("datasets/fr-sample/addresses.ndjson.gz");
            let tmp = tempfile::tempdir().expect("tempdir");
            let db = Database::open(tmp.path()).expect("open");
            db.import(std::slice::from_ref(&source), &ImportOptions::default(), &mut |_| {}).expect("import");
            let data = tmp.path().to_owned();
            (Some(tmp), data, source)
        };
    let db = Database::open_read_only(&data).expect("open database");
    let s = sample(&source, 500);
    eprintln!("database: {} documents; {} street queries, {} cities", db.len(), s.full.len(), s.city.len());
    let mut group = c.benchmark_group("search");
    let shapes: [(&str, &Vec<String>, bool); 6] = [
        ("full_address", &s.full, true),
        ("full_address_no_autocomplete", &s.full, false),
        ("no_postcode", &s.no_postcode, true),
        ("autocomplete_prefix", &s.prefix, true),
        ("typo", &s.typo, true),
        ("city_only", &s.city, true),
    ];
    for (name, queries, autocomplete) in shapes {
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % queries.len();
                let mut q = SearchQuery::new(queries[i].clone());
                q.autocomplete = autocomplete;
                db.search(&q).expect("search")
            });
        });
    }
    let common = ["rue de la", "avenue de la", "chemin du"];
    let mut i = 0;
    group.bench_function("common_words", |b| {
        b.iter(|| {
            i = (i + 1) % common.len();
            db.search(&SearchQuery::new(common[i])).expect("search")
        });
    });
    let mut i = 0;
    group.bench_function("street_city_with_lat_lon", |b| {
        b.iter(|| {
            i = (i + 1) % s.street_city.len();
            let mut q = SearchQuery::new(s.street_city[i].clone());
            q.near = s.points.get(i).copied();
            db.search(&q).expect("search")
        });
    });
    group.finish();
    let mut i = 0;
    c.bench_function("reverse/nearest", |b| {
        b.iter(|| {
            i = (i + 1) % s.points.len();
            db.reverse(&ReverseQuery { at: s.points[i], limit: 1, filters: vec![] }).expect("reverse")
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(4)).warm_up_time(std::time::Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
