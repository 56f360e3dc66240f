//! The net tile: moves received datagrams from the backend into the ingress
//! ring (towards verify) and replies from the egress ring to the backend,
//! the same for every backend. Buffers come from and go back to one
//! `PacketPool`; a full ring or an empty pool drops the datagram and counts
//! it, so the tile never waits and never allocates. A source over its
//! datagram rate (`net.source_datagrams_per_s`) is dropped here, before the
//! ring, so that a flood does not queue ahead of everyone else.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    backend::Backend,
    packet::{Packet, PacketPool},
    ratelimit::{RateLimiter, Verdict},
    ring::{Consumer, Producer},
    runtime::Tile,
};

/// Datagrams moved per poll, each way, at most.
pub const NET_BURST_MAX: usize = 256;

/// The net tile's counters (metrics).
#[derive(Debug, Default)]
pub struct NetStats {
    pub received: AtomicU64,
    pub replies_sent: AtomicU64,
    /// Datagrams dropped because the ingress ring was full (verify behind).
    pub dropped_ingress_full: AtomicU64,
    /// Datagrams dropped because their source was over its rate: by the
    /// tile, and below it by the backend's filter (the XDP program).
    pub dropped_rate_limited: AtomicU64,
    pub dropped_rate_limited_below: AtomicU64,
    /// Polls that found no free packet buffer (all in flight).
    pub buffers_exhausted: AtomicU64,
    pub backend_errors: AtomicU64,
}

/// Called after datagrams were pushed, to wake the ingress consumer.
pub type Wake = Box<dyn Fn() + Send>;

pub struct NetTile<B: Backend> {
    backend: B,
    pool: Arc<PacketPool>,
    ingress: Producer<Box<Packet>>,
    egress: Consumer<Box<Packet>>,
    wake: Wake,
    burst: usize,
    /// Empty buffers lent to the backend to receive into.
    #[expect(clippy::vec_box, reason = "buffers move between pool, rings and backend by pointer, never copied")]
    rx: Vec<Box<Packet>>,
    /// Replies the backend has not taken yet.
    #[expect(clippy::vec_box, reason = "as rx")]
    tx: Vec<Box<Packet>>,
    /// Per-source datagram limits, when configured.
    source_limit: Option<RateLimiter>,
    stats: Arc<NetStats>,
}

impl<B: Backend> std::fmt::Debug for NetTile<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetTile").field("backend", &self.backend.name()).field("burst", &self.burst).finish()
    }
}

impl<B: Backend> NetTile<B> {
    pub fn new(
        backend: B,
        pool: Arc<PacketPool>,
        ingress: Producer<Box<Packet>>,
        egress: Consumer<Box<Packet>>,
        wake: Wake,
        burst: usize,
        source_limit: Option<RateLimiter>,
    ) -> (Self, Arc<NetStats>) {
        assert!((1..=NET_BURST_MAX).contains(&burst), "net burst {burst} outside 1..={NET_BURST_MAX}");
        let stats = Arc::new(NetStats::default());
        let tile = Self {
            backend,
            pool,
            ingress,
            egress,
            wake,
            burst,
            rx: Vec::with_capacity(burst),
            tx: Vec::with_capacity(burst),
            source_limit,
            stats: stats.clone(),
        };
        (tile, stats)
    }

    fn count_error(&self, error: &std::io::Error) {
        if self.stats.backend_errors.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!(backend = self.backend.name(), %error, "net backend error (further ones are counted)");
        }
    }
}

impl<B: Backend> Tile for NetTile<B> {
    fn name(&self) -> &'static str {
        "net"
    }

    fn poll(&mut self) -> usize {
        while self.rx.len() < self.burst {
            let Some(packet) = self.pool.take() else {
                self.stats.buffers_exhausted.fetch_add(1, Ordering::Relaxed);
                break;
            };
            self.rx.push(packet);
        }
        let received = self.backend.receive(&mut self.rx).unwrap_or_else(|error| {
            self.count_error(&error);
            0
        });
        // One clock read per burst, and none when idle or unlimited.
        let now = (received > 0 && self.source_limit.is_some()).then(Instant::now);
        for packet in self.rx.drain(..received) {
            if let (Some(limit), Some(now)) = (&mut self.source_limit, now)
                && limit.check(IpAddr::V4(*packet.peer.addr.ip()), 1, now) != Verdict::Allow
            {
                self.stats.dropped_rate_limited.fetch_add(1, Ordering::Relaxed);
                self.pool.give_back(packet);
                continue;
            }
            if let Err(packet) = self.ingress.push(packet) {
                self.stats.dropped_ingress_full.fetch_add(1, Ordering::Relaxed);
                self.pool.give_back(packet);
            }
        }
        if received > 0 {
            self.stats.received.fetch_add(received as u64, Ordering::Relaxed);
            (self.wake)();
        }
        while self.tx.len() < self.burst {
            let Some(reply) = self.egress.pop() else { break };
            self.tx.push(reply);
        }
        let mut sent = 0;
        if !self.tx.is_empty() {
            sent = self.backend.send(&self.tx).unwrap_or_else(|error| {
                self.count_error(&error);
                0
            });
            for reply in self.tx.drain(..sent) {
                self.pool.give_back(reply);
            }
            self.stats.replies_sent.fetch_add(sent as u64, Ordering::Relaxed);
        }
        if let Err(error) = self.backend.flush() {
            self.count_error(&error);
        }
        received + sent
    }

    /// Waits in the backend for a datagram, or for the egress doorbell that
    /// verify rings when it pushes a reply.
    fn park(&mut self, timeout: Duration) -> bool {
        let Some(doorbell) = self.egress.doorbell() else { return false };
        let backend = &mut self.backend;
        let waited = self.egress.wait_unless_ready(doorbell, || backend.wait(timeout, doorbell.fd()), Ok(true));
        match waited {
            Ok(parked) => parked,
            Err(error) => {
                self.count_error(&error);
                false
            }
        }
    }

    fn housekeeping(&mut self) {
        let below = self.backend.dropped_by_source_limit();
        self.stats.dropped_rate_limited_below.store(below, Ordering::Relaxed);
    }
}
