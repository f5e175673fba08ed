//! The response cache's hit path, alone and with a second thread hammering it.
//!   cargo bench -p cairn-bench --bench cache

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cairn::{CacheConfig, ResponseCache};
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let cache = Arc::new(ResponseCache::new(CacheConfig::default()));
    let body: Arc<[u8]> = Arc::from(vec![b'x'; 2000]);
    let keys: Vec<String> = (0..10_000).map(|i| format!("/search?limit=5&q=rue+numero+{i}")).collect();
    for k in &keys {
        cache.insert(1, k, body.clone(), true);
    }
    let mut i = 0;
    c.bench_function("cache/hit_1_thread", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            cache.get(1, &keys[i]).expect("hit")
        })
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
        })
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
