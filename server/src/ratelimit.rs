//! Per-client rate limiting: one token bucket per client address.
//!
//! Written here rather than taken from a crate because the answer must carry
//! the bucket's exact state (remaining tokens, seconds to refill, seconds to
//! the next token) for the `X-RateLimit-*` and `Retry-After` headers, and the
//! whole of it is a map of two numbers per client.
//!
//! The client is the TCP peer's address: `X-Forwarded-For` and the like are
//! not read, since any client can write them. Behind a reverse proxy every
//! client is the proxy.
//!
//! Many distinct clients cost bounded memory and work. A shard keeps at
//! most `SHARD_CAP` buckets: when a sweep finds it fuller than half of that
//! once refilled buckets are gone, it forgets the least recently seen
//! clients, which start again with a full bucket when they come back. And a
//! shard sweeps only once it has doubled since its last sweep, so the work
//! of sweeps stays a few buckets per new client, never a whole shard each.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::time::Instant;

use parking_lot::Mutex;

const SHARDS: usize = 16;
/// Buckets a shard keeps at most: 16 x 8,192 = 131,072 clients, about
/// 13 MB with the map's own room.
const SHARD_CAP: usize = 8192;
/// A shard smaller than this is not swept.
const SWEEP_MIN: usize = 1024;

struct Bucket {
    tokens: f64,
    /// When the client was last seen (and the tokens counted).
    at: Instant,
}

#[derive(Default)]
struct Shard {
    buckets: HashMap<IpAddr, Bucket>,
    /// The size at which a new client sweeps the shard (0: `SWEEP_MIN`).
    sweep_at: usize,
    /// Buckets looked at by sweeps since the start: their work.
    examined: u64,
}

impl Shard {
    /// Drops the buckets that have refilled, whose clients are
    /// indistinguishable from new ones; then, past half of `cap`, the least
    /// recently seen down to half. The next sweep waits until the shard
    /// has doubled: the new clients in between pay for it.
    fn sweep(&mut self, now: Instant, rate: f64, burst: f64, cap: usize) {
        self.examined += self.buckets.len() as u64;
        self.buckets.retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst);
        let keep = cap / 2;
        if self.buckets.len() > keep {
            self.forget_oldest(self.buckets.len() - keep);
        }
        self.sweep_at = (2 * self.buckets.len()).clamp(SWEEP_MIN.min(cap), cap);
    }

    fn forget_oldest(&mut self, n: usize) {
        let mut seen: Vec<(Instant, IpAddr)> = self.buckets.iter().map(|(ip, b)| (b.at, *ip)).collect();
        self.examined += seen.len() as u64;
        if n == 0 || n > seen.len() {
            return;
        }
        seen.select_nth_unstable_by_key(n - 1, |(at, _)| *at);
        for (_, ip) in &seen[..n] {
            self.buckets.remove(ip);
        }
    }
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
    shard_cap: usize,
    hasher: RandomState,
    shards: [Mutex<Shard>; SHARDS],
}

impl RateLimiter {
    /// `rate` requests per second per client, up to `burst` at once.
    pub fn new(rate: f64, burst: u32) -> RateLimiter {
        RateLimiter::with_shard_cap(rate, burst, SHARD_CAP)
    }

    fn with_shard_cap(rate: f64, burst: u32, shard_cap: usize) -> RateLimiter {
        RateLimiter {
            rate,
            burst,
            shard_cap: shard_cap.max(2),
            hasher: RandomState::new(),
            shards: std::array::from_fn(|_| Mutex::default()),
        }
    }

    pub fn check(&self, client: IpAddr) -> Decision {
        self.check_at(client, Instant::now())
    }

    /// Clients with a bucket.
    pub fn clients(&self) -> usize {
        self.shards.iter().map(|s| s.lock().buckets.len()).sum()
    }

    /// Buckets looked at by sweeps since the start.
    pub fn examined(&self) -> u64 {
        self.shards.iter().map(|s| s.lock().examined).sum()
    }

    fn check_at(&self, client: IpAddr, now: Instant) -> Decision {
        let burst = f64::from(self.burst);
        let shard = &self.shards[self.hasher.hash_one(client) as usize % SHARDS];
        let mut shard = shard.lock();
        let sweep_at = if shard.sweep_at == 0 { SWEEP_MIN.min(self.shard_cap) } else { shard.sweep_at };
        if shard.buckets.len() >= sweep_at && !shard.buckets.contains_key(&client) {
            shard.sweep(now, self.rate, burst, self.shard_cap);
        }
        let b = shard.buckets.entry(client).or_insert(Bucket { tokens: burst, at: now });
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

    fn client(i: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i))
    }

    /// 100,000 distinct clients, none of whose buckets refills meanwhile:
    /// what sweeps look at stays a few buckets per client, not a shard per
    /// client.
    #[test]
    fn many_clients_cost_a_few_buckets_of_sweeping_each() {
        let l = RateLimiter::new(1.0, 5);
        let t0 = Instant::now();
        let n = 100_000u32;
        for i in 0..n {
            assert!(l.check_at(client(i), t0 + Duration::from_micros(u64::from(i))).allowed);
        }
        assert!(l.examined() < 10 * u64::from(n), "{} buckets examined for {n} clients", l.examined());
        assert_eq!(l.clients(), n as usize, "under the cap, every client keeps its bucket");
    }

    /// Past its cap a shard forgets the least recently seen clients: they
    /// start again with a full bucket; the others keep theirs.
    #[test]
    fn many_clients_stay_under_the_cap_and_the_oldest_are_forgotten() {
        let cap = 1024;
        let l = RateLimiter::with_shard_cap(1.0, 5, cap);
        let t0 = Instant::now();
        let n = 100_000u32;
        let at = |i: u32| t0 + Duration::from_micros(u64::from(i));
        for i in 0..n {
            assert_eq!(l.check_at(client(i), at(i)).remaining, 4);
            assert!(l.clients() <= SHARDS * cap, "{} clients after {i}", l.clients());
        }
        assert!(l.examined() < 10 * u64::from(n), "{} buckets examined for {n} clients", l.examined());
        let end = at(n);
        assert_eq!(l.check_at(client(n - 1), end).remaining, 3, "the last client kept its bucket");
        assert_eq!(l.check_at(client(0), end).remaining, 4, "the first was forgotten: a full bucket again");
    }
}
