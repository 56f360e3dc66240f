//! Per-source rate limits: a token bucket per source address, in a table
//! bounded by `sources_max` and allocated once. A table full of busy sources
//! sends every newcomer to one shared overflow bucket, so that a flood from
//! many (spoofed) addresses is limited as one source and never grows memory.
//! A source over its limit hears so once (`Verdict::Refuse`); what it sends
//! until it is allowed again is dropped unanswered (`Verdict::Drop`), so that
//! a flood cannot make the node spend a reply on every datagram.
//! The clock is passed in: the limiter is deterministic under test.

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

/// A full table is swept for idle sources at most this often, so that a flood
/// of new addresses costs one scan per interval, not one per datagram.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    /// Refused since it was last allowed: told once already.
    told: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Over the limit, and the first time since last allowed: answer with a code.
    Refuse,
    /// Over the limit again: drop without a reply.
    Drop,
}

#[derive(Debug)]
pub struct RateLimiter {
    rate_per_s: f64,
    burst: f64,
    sources_max: usize,
    buckets: HashMap<IpAddr, Bucket>,
    overflow: Bucket,
    swept: Instant,
}

impl RateLimiter {
    pub fn new(rate_per_s: u32, burst: u32, sources_max: usize, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate_per_s: f64::from(rate_per_s),
            burst,
            sources_max,
            buckets: HashMap::with_capacity(sources_max),
            overflow: Bucket { tokens: burst, updated: now, told: false },
            swept: now,
        }
    }

    /// Takes `cost` tokens from `source`'s bucket if it holds them.
    pub fn check(&mut self, source: IpAddr, cost: u32, now: Instant) -> Verdict {
        if !self.buckets.contains_key(&source)
            && self.buckets.len() >= self.sources_max
            && now.duration_since(self.swept) >= SWEEP_INTERVAL
        {
            self.forget_idle(now);
        }
        let fresh = Bucket { tokens: self.burst, updated: now, told: false };
        let bucket = if self.buckets.len() < self.sources_max || self.buckets.contains_key(&source) {
            self.buckets.entry(source).or_insert(fresh)
        } else {
            &mut self.overflow
        };
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.updated).as_secs_f64() * self.rate_per_s).min(self.burst);
        bucket.updated = now;
        let cost = f64::from(cost);
        if bucket.tokens >= cost {
            bucket.tokens -= cost;
            bucket.told = false;
            Verdict::Allow
        } else if bucket.told {
            Verdict::Drop
        } else {
            bucket.told = true;
            Verdict::Refuse
        }
    }

    /// Drops the sources whose buckets have refilled: they are as if new.
    fn forget_idle(&mut self, now: Instant) {
        self.swept = now;
        let (rate, burst) = (self.rate_per_s, self.burst);
        self.buckets.retain(|_, b| b.tokens + now.duration_since(b.updated).as_secs_f64() * rate < burst);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    fn allow(limiter: &mut RateLimiter, source: IpAddr, cost: u32, now: Instant) -> bool {
        limiter.check(source, cost, now) == Verdict::Allow
    }

    #[test]
    fn a_source_over_its_limit_is_told_once_then_dropped_until_allowed() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(10, 1, 4, start);
        assert_eq!(limiter.check(ip(1), 1, start), Verdict::Allow);
        assert_eq!(limiter.check(ip(1), 1, start), Verdict::Refuse);
        assert_eq!(limiter.check(ip(1), 1, start), Verdict::Drop);
        assert_eq!(limiter.check(ip(1), 1, start), Verdict::Drop);
        let later = start + Duration::from_millis(100);
        assert_eq!(limiter.check(ip(1), 1, later), Verdict::Allow);
        assert_eq!(limiter.check(ip(1), 1, later), Verdict::Refuse, "told again after being allowed");
    }

    #[test]
    fn a_source_gets_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(100, 10, 4, start);
        assert!((0..10).all(|_| allow(&mut limiter, ip(1), 1, start)));
        assert!(!allow(&mut limiter, ip(1), 1, start), "the burst is spent");
        assert!(allow(&mut limiter, ip(2), 10, start), "another source has its own bucket");
        // 100 per second: 50 ms buys 5 tokens, and never more than the burst.
        let later = start + Duration::from_millis(50);
        assert!(allow(&mut limiter, ip(1), 5, later));
        assert!(!allow(&mut limiter, ip(1), 1, later));
        let much_later = start + Duration::from_secs(60);
        assert!(!allow(&mut limiter, ip(1), 11, much_later), "refills stop at the burst");
        assert!(allow(&mut limiter, ip(1), 10, much_later));
    }

    #[test]
    fn many_sources_share_the_overflow_bucket_and_memory_stays_bounded() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(1, 2, 8, start);
        for n in 0..8 {
            assert!(allow(&mut limiter, ip(n), 1, start));
        }
        // The table is full of busy sources: newcomers share one bucket of 2.
        let admitted = (100..10_000).filter(|&n| allow(&mut limiter, ip(n), 1, start)).count();
        assert_eq!(admitted, 2);
        assert_eq!(limiter.buckets.len(), 8);
        // Once the first sources are idle (refilled), newcomers get their own.
        let later = start + Duration::from_secs(5);
        assert!(allow(&mut limiter, ip(20_000), 2, later));
        assert!(limiter.buckets.len() <= 8);
    }
}
