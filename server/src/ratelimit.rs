//! Per-client rate limiting: one token bucket per client address.
//!
//! Written here rather than taken from a crate because the answer must carry
//! the bucket's exact state (remaining tokens, seconds to refill, seconds to
//! the next token) for the `X-RateLimit-*` and `Retry-After` headers, and the
//! whole of it is a map of two numbers per client.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::time::Instant;

use parking_lot::Mutex;

const SHARDS: usize = 16;
/// A shard this full drops the buckets that have refilled: those clients
/// are indistinguishable from new ones.
const SHARD_SWEEP: usize = 4096;

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// What the limiter decided for one request.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    pub allowed: bool,
    /// The bucket's size: requests a client may send at once.
    pub limit: u32,
    /// Requests the client may still send right now.
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
    /// Seconds until the next request would be allowed (0 when allowed).
    pub retry_after_secs: u64,
}

pub struct RateLimiter {
    rate: f64,
    burst: u32,
    hasher: RandomState,
    shards: [Mutex<HashMap<IpAddr, Bucket>>; SHARDS],
}

impl RateLimiter {
    /// `rate` requests per second per client, up to `burst` at once.
    pub fn new(rate: f64, burst: u32) -> RateLimiter {
        RateLimiter { rate, burst, hasher: RandomState::new(), shards: std::array::from_fn(|_| Mutex::default()) }
    }

    pub fn check(&self, client: IpAddr) -> Decision {
        self.check_at(client, Instant::now())
    }

    fn check_at(&self, client: IpAddr, now: Instant) -> Decision {
        let burst = f64::from(self.burst);
        let shard = &self.shards[self.hasher.hash_one(client) as usize % SHARDS];
        let mut map = shard.lock();
        if map.len() >= SHARD_SWEEP && !map.contains_key(&client) {
            let rate = self.rate;
            map.retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = map.entry(client).or_insert(Bucket { tokens: burst, at: now });
        b.tokens = (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * self.rate).min(burst);
        b.at = now;
        let allowed = b.tokens >= 1.0;
        if allowed {
            b.tokens -= 1.0;
        }
        let secs = |tokens: f64| (tokens.max(0.0) / self.rate).ceil() as u64;
        Decision {
            allowed,
            limit: self.burst,
            remaining: b.tokens.floor() as u32,
            reset_secs: secs(burst - b.tokens),
            retry_after_secs: if allowed { 0 } else { secs(1.0 - b.tokens).max(1) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_is_allowed_then_refused_until_tokens_come_back() {
        let l = RateLimiter::new(2.0, 3);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        let remaining: Vec<u32> =
            (0..3).map(|_| l.check_at(ip, t0)).inspect(|d| assert!(d.allowed)).map(|d| d.remaining).collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = l.check_at(ip, t0);
        assert!(!refused.allowed);
        assert_eq!((refused.retry_after_secs, refused.reset_secs, refused.limit), (1, 2, 3));
        assert!(l.check_at(other, t0).allowed, "clients have buckets of their own");
        assert!(l.check_at(ip, t0 + Duration::from_millis(500)).allowed, "one token back after 1/rate s");
        assert!(!l.check_at(ip, t0 + Duration::from_millis(500)).allowed);
    }
}
