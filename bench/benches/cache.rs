//! The response cache's hit path, alone and with a second thread hammering it.
//!   cargo bench -p cairn-bench --bench cache

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cairn::{CacheConfig, ResponseCache};
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let cache = Arc::new(ResponseCache::new(CacheConfig::default()));
    // A GeoJSON answer of five features, about the median size of the load
    // bench's answers (2.3 KB), kept lz4-compressed by the cache.
    let feature = |i: usize| {
        format!(
            r#"{{"type":"Feature","geometry":{{"type":"Point","coordinates":[2.3{i}41,48.8{i}62]}},"properties":{{"label":"{i} Rue de la Paix 75002 Paris","score":0.97{i},"housenumber":"{i}","id":"75102_7048_000{i}","name":"{i} Rue de la Paix","postcode":"75002","citycode":"75102","x":651{i}.2,"y":68623{i}.5,"city":"Paris","district":"Paris 2e Arrondissement","context":"75, Paris, Île-de-France","type":"housenumber","importance":0.6{i},"street":"Rue de la Paix"}}}}"#
        )
    };
    let features: Vec<String> = (1..=5).map(feature).collect();
    let body = format!(
        r#"{{"type":"FeatureCollection","version":"draft","features":[{}],"attribution":"BAN","licence":"ETALAB-2.0","query":"rue de la paix","limit":5}}"#,
        features.join(",")
    );
    let keys: Vec<String> = (0..10_000).map(|i| format!("/search?limit=5&q=rue+numero+{i}")).collect();
    for k in &keys {
        cache.insert(1, k, body.as_bytes(), true);
    }
    let mut i = 0;
    c.bench_function("cache/hit_1_thread", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            cache.get(1, &keys[i]).expect("hit")
        });
    });
    // A second thread reads the same keys all the time: no global lock means
    // the first thread's hits stay close to the uncontended figure.
    let stop = Arc::new(AtomicBool::new(false));
    let other = {
        let (cache, stop, keys) = (cache.clone(), stop.clone(), keys.clone());
        std::thread::spawn(move || {
            let mut j = 0;
            while !stop.load(Ordering::Relaxed) {
                j = (j + 104_729) % keys.len();
                std::hint::black_box(cache.get(1, &keys[j]));
            }
        })
    };
    c.bench_function("cache/hit_2_threads", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            cache.get(1, &keys[i]).expect("hit")
        });
    });
    stop.store(true, Ordering::Relaxed);
    let _ = other.join();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
