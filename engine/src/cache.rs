//! A size-bounded cache of finished responses, shared by all threads.
//!
//! Keys carry the generation they were computed on, so a commit makes every
//! older entry unreachable at once (they age out of the LRU). Found and empty
//! results have separate lifetimes: an empty answer is cheap to recompute
//! and more likely to change when data is added.
//!
//! Bodies are kept lz4-compressed when that makes them notably smaller:
//! `GeoJSON` answers shrink to about a third, so the same bytes hold three
//! times the answers, and a hit pays a microsecond to decompress where a
//! miss pays a search.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, Lifecycle, Weighter};

#[derive(Clone)]
struct Entry {
    /// The body, lz4-compressed with its length first when `packed`.
    body: Arc<[u8]>,
    packed: bool,
    found: bool,
    at: Instant,
}

/// Bodies shorter than this are kept as they are: too little to gain.
const PACK_MIN_BYTES: usize = 256;

/// Weighs an entry by the bytes it holds, so the bound is in bytes.
#[derive(Clone)]
struct ByBytes;

impl Weighter<String, Entry> for ByBytes {
    fn weight(&self, key: &String, val: &Entry) -> u64 {
        (key.len() + val.body.len() + 64) as u64
    }
}

#[derive(Clone, Default)]
struct CountEvictions(Arc<AtomicU64>);

impl Lifecycle<String, Entry> for CountEvictions {
    type RequestState = ();
    fn on_evict(&self, (): &mut (), _: String, _: Entry) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Bounds and lifetimes of a [`ResponseCache`].
#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    /// Upper bound of keys plus bodies, in bytes.
    pub max_bytes: u64,
    /// How long a response with results stays valid.
    pub found_ttl: Duration,
    /// How long a response without results stays valid.
    pub empty_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { max_bytes: 64 << 20, found_ttl: Duration::from_mins(5), empty_ttl: Duration::from_secs(30) }
    }
}

/// Counters of a [`ResponseCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub entries: u64,
    pub bytes: u64,
}

/// The response cache.
pub struct ResponseCache {
    inner: Cache<String, Entry, ByBytes, DefaultHashBuilder, CountEvictions>,
    config: CacheConfig,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: CountEvictions,
}

fn full_key(generation: u64, key: &str) -> String {
    use std::fmt::Write;
    let mut k = String::with_capacity(key.len() + 21);
    let _ = write!(k, "{generation}\u{0}{key}");
    k
}

impl ResponseCache {
    pub fn new(config: CacheConfig) -> ResponseCache {
        let evictions = CountEvictions::default();
        // Estimated items: answers are a few KiB, a third of that packed.
        let items = (config.max_bytes / 768).clamp(16, 1 << 22) as usize;
        let inner =
            Cache::with(items, config.max_bytes.max(1), ByBytes, DefaultHashBuilder::default(), evictions.clone());
        ResponseCache { inner, config, hits: AtomicU64::new(0), misses: AtomicU64::new(0), evictions }
    }

    /// The body cached for this request on this generation, if still fresh.
    pub fn get(&self, generation: u64, key: &str) -> Option<Vec<u8>> {
        let body = self.peek(generation, key);
        if body.is_none() {
            self.missed();
        }
        body
    }

    /// [`ResponseCache::get`], counting a hit but not a miss: for a caller
    /// that looks before it knows whether the request is valid, and counts
    /// the miss with [`ResponseCache::missed`] once it is.
    pub fn peek(&self, generation: u64, key: &str) -> Option<Vec<u8>> {
        let k = full_key(generation, key);
        match self.inner.get(&k) {
            Some(e) => {
                let ttl = if e.found { self.config.found_ttl } else { self.config.empty_ttl };
                // An entry that does not decompress (it never should) is
                // dropped like a stale one, and the answer recomputed.
                let body = if e.at.elapsed() > ttl {
                    None
                } else if e.packed {
                    lz4_flex::block::decompress_size_prepended(&e.body).ok()
                } else {
                    Some(e.body.to_vec())
                };
                if let Some(body) = body {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Some(body);
                }
                self.inner.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Counts a miss.
    pub fn missed(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Keeps a finished body; `found` says whether it holds any result.
    pub fn insert(&self, generation: u64, key: &str, body: &[u8], found: bool) {
        let ttl = if found { self.config.found_ttl } else { self.config.empty_ttl };
        if ttl.is_zero() || self.config.max_bytes == 0 {
            return;
        }
        let packed = (body.len() >= PACK_MIN_BYTES)
            .then(|| lz4_flex::block::compress_prepend_size(body))
            // Already compressed bodies (gzip, brotli) do not shrink.
            .filter(|p| p.len() < body.len() - body.len() / 8);
        let entry = match packed {
            Some(p) => Entry { body: Arc::from(p), packed: true, found, at: Instant::now() },
            None => Entry { body: Arc::from(body), packed: false, found, at: Instant::now() },
        };
        self.inner.insert(full_key(generation, key), entry);
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.0.load(Ordering::Relaxed),
            entries: self.inner.len() as u64,
            bytes: self.inner.weight(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(s: &str) -> &[u8] {
        s.as_bytes()
    }

    #[test]
    fn hits_belong_to_their_generation() {
        let c = ResponseCache::new(CacheConfig::default());
        assert!(c.get(1, "/search?q=a").is_none());
        c.insert(1, "/search?q=a", body("one"), true);
        assert_eq!(c.get(1, "/search?q=a").as_deref(), Some(&b"one"[..]));
        // A new generation never sees the old entry.
        assert!(c.get(2, "/search?q=a").is_none());
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.entries), (1, 2, 1));
    }

    #[test]
    fn a_peek_counts_hits_and_leaves_misses_to_the_caller() {
        let c = ResponseCache::new(CacheConfig::default());
        assert!(c.peek(1, "k").is_none());
        assert_eq!((c.stats().hits, c.stats().misses), (0, 0));
        c.missed();
        c.insert(1, "k", body("v"), true);
        assert_eq!(c.peek(1, "k").as_deref(), Some(body("v")));
        assert_eq!((c.stats().hits, c.stats().misses), (1, 1));
    }

    #[test]
    fn empty_results_expire_on_their_own_clock() {
        let c = ResponseCache::new(CacheConfig {
            found_ttl: Duration::from_mins(1),
            empty_ttl: Duration::from_millis(1),
            ..CacheConfig::default()
        });
        c.insert(1, "found", body("x"), true);
        c.insert(1, "empty", body("[]"), false);
        std::thread::sleep(Duration::from_millis(20));
        assert!(c.get(1, "found").is_some());
        assert!(c.get(1, "empty").is_none());
    }

    #[test]
    fn the_byte_bound_evicts() {
        let c = ResponseCache::new(CacheConfig { max_bytes: 64 * 1024, ..CacheConfig::default() });
        // Bytes that do not compress, so each entry weighs its length.
        let mut x = 1u32;
        let noise: Vec<u8> = (0..1000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        for i in 0..1000 {
            c.insert(1, &format!("k{i}"), &noise, true);
        }
        assert_eq!(c.get(1, "k999").as_deref(), Some(&noise[..]));
        let s = c.stats();
        assert!(s.bytes <= 64 * 1024, "{s:?}");
        assert!(s.evictions > 0 && s.entries < 1000, "{s:?}");
    }

    #[test]
    fn compressible_bodies_come_back_whole_and_take_less_room() {
        let c = ResponseCache::new(CacheConfig { max_bytes: 64 * 1024, ..CacheConfig::default() });
        let answer = |i: usize| {
            let f = format!(
                r#"{{"type":"Feature","properties":{{"label":"{i} Rue de la Paix 75002 Paris","score":0.9}}}}"#
            );
            format!(r#"{{"type":"FeatureCollection","features":[{}]}}"#, vec![f; 5].join(","))
        };
        // 200 answers that would weigh more than the bound, kept raw.
        assert!(200 * (answer(0).len() + 64) > 64 * 1024);
        for i in 0..200 {
            c.insert(1, &format!("k{i}"), answer(i).as_bytes(), true);
        }
        let s = c.stats();
        assert_eq!(s.entries, 200, "{s:?}");
        assert!(s.bytes <= 64 * 1024, "{s:?}");
        for i in 0..200 {
            assert_eq!(c.get(1, &format!("k{i}")).as_deref(), Some(answer(i).as_bytes()));
        }
        // Short bodies are kept as they are, and come back as well.
        c.insert(1, "short", b"[]", false);
        assert_eq!(c.get(1, "short").as_deref(), Some(&b"[]"[..]));
    }
}
