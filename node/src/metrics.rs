//! Prometheus metrics, and the small HTTP endpoint that serves them with
//! /health and /ready.

use std::sync::{Arc, atomic::Ordering};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub code: u16,
}

/// Where a batcher transaction carries its frames.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DaLabel {
    pub kind: &'static str,
}

/// An OP Stack chain's batcher (`src/batcher/`).
#[derive(Debug)]
pub struct BatcherMetrics {
    /// Compressed bytes in channels not yet read back from L1.
    pub pending_bytes: Gauge,
    /// Channels open or closed and not yet read back from L1.
    pub channels_open: Gauge,
    /// From a block's timestamp to its batch read back from L1, milliseconds.
    pub inclusion_delay_ms: Histogram,
    /// What the batcher's included transactions cost, gwei.
    pub fees_gwei: Counter,
    pub bytes_posted: Family<DaLabel, Counter>,
    pub txs_posted: Family<DaLabel, Counter>,
    pub blocks_posted: Counter,
    pub user_txs_posted: Counter,
    pub resubmissions: Counter,
    /// Channels given up and their blocks sent again in a new one.
    pub channels_invalidated: Counter,
    pub posted_head: Gauge,
    pub safe_head: Gauge,
    pub finalized_head: Gauge,
    /// 1 while a block's batch is close to missing its sequencing window.
    pub window_alarm: Gauge,
}

impl BatcherMetrics {
    fn new() -> Self {
        Self {
            pending_bytes: Gauge::default(),
            channels_open: Gauge::default(),
            inclusion_delay_ms: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                100.0, 2.0, 16,
            )),
            fees_gwei: Counter::default(),
            bytes_posted: Family::default(),
            txs_posted: Family::default(),
            blocks_posted: Counter::default(),
            user_txs_posted: Counter::default(),
            resubmissions: Counter::default(),
            channels_invalidated: Counter::default(),
            posted_head: Gauge::default(),
            safe_head: Gauge::default(),
            finalized_head: Gauge::default(),
            window_alarm: Gauge::default(),
        }
    }

    fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("batcher");
        r.register("pending_bytes", "Compressed channel bytes not yet read back from L1", self.pending_bytes.clone());
        r.register("channels_open", "Channels open, or closed and not yet read back", self.channels_open.clone());
        r.register(
            "inclusion_delay_ms",
            "From a block's timestamp to its batch read back from L1, milliseconds",
            self.inclusion_delay_ms.clone(),
        );
        r.register("fees_gwei", "Fees of the batcher's included transactions, gwei", self.fees_gwei.clone());
        r.register("bytes_posted", "Batcher transaction payload bytes included on L1", self.bytes_posted.clone());
        r.register("txs_posted", "Batcher transactions included on L1", self.txs_posted.clone());
        r.register("blocks_posted", "L2 blocks read back from L1 batches", self.blocks_posted.clone());
        r.register("user_txs_posted", "User transactions read back from L1 batches", self.user_txs_posted.clone());
        r.register("resubmissions", "Batcher transactions sent again with raised fees", self.resubmissions.clone());
        r.register(
            "channels_invalidated",
            "Channels given up (dropped, reorged, refused) whose blocks went into a new channel",
            self.channels_invalidated.clone(),
        );
        r.register("posted_head", "Newest L2 block read back from L1 batches", self.posted_head.clone());
        r.register("safe_head", "Newest safe L2 block", self.safe_head.clone());
        r.register("finalized_head", "Newest finalized L2 block", self.finalized_head.clone());
        r.register(
            "window_alarm",
            "1 while a block's batch is close to missing its sequencing window",
            self.window_alarm.clone(),
        );
    }
}

/// Every metric the node exports. Cheap to update from the hot loop.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub tx_received: Counter,
    pub tx_accepted: Counter,
    pub tx_rejected: Family<ReasonLabel, Counter>,
    pub tx_preconfirmed: Counter,
    pub pool_size: Gauge,
    pub head_number: Gauge,
    pub log_disk_free_bytes: Gauge,
    pub preconf_latency_us: Histogram,
    pub seal_time_us: Histogram,
    pub fsync_time_us: Histogram,
    pub block_sign_time_us: Histogram,
    pub block_signed_latency_us: Histogram,
    pub signing_lag_blocks: Gauge,
    pub blocks_sealed: Counter,
    /// Unsafe blocks abandoned and rebuilt after L1 reorgs (OP Stack chains).
    pub l1_reorg_rebuilt_blocks: Counter,
    pub exec_speculated_txs: Counter,
    pub exec_reexecuted_txs: Counter,
    pub exec_sequential_txs: Counter,
    pub udp_replies_dropped: Counter,
    pub udp_rate_limited_datagrams: Counter,
    pub rpc_connections_refused: Counter,
    pub rpc_rate_limited: Counter,
    /// High availability: 0 a single node, 1 a standby, 2 the leader.
    pub ha_role: Gauge,
    pub ha_epoch: Gauge,
    pub ha_elections_won: Counter,
    pub ha_fencing_refusals: Counter,
    /// Records behind: a standby's own lag, or a leader's slowest standby.
    pub ha_replication_lag_records: Gauge,
    pub ha_sync_wait_us: Histogram,
    pub batcher: BatcherMetrics,
    net: NetMetrics,
    /// The dataplane's own counters, copied into `net` at each scrape.
    net_sources: std::sync::OnceLock<NetSources>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RingLabel {
    pub ring: &'static str,
}

#[derive(Debug, Default)]
struct NetMetrics {
    received: Counter,
    replies_sent: Counter,
    dropped: Family<DropLabel, Counter>,
    buffers_exhausted_polls: Counter,
    backend_errors: Counter,
    ring_overruns: Family<RingLabel, Counter>,
    buffers_free: Gauge,
}

#[derive(Debug)]
struct NetSources {
    net: Arc<tephra_dataplane::net::NetStats>,
    ingress: Arc<tephra_dataplane::ring::RingStats>,
    egress: Arc<tephra_dataplane::ring::RingStats>,
    pool: Arc<tephra_dataplane::packet::PacketPool>,
}

/// Microsecond buckets from 10 us to about 1.3 s.
fn micros_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(10.0, 2.0, 18)
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tephra");
        let m = Self {
            tx_received: Counter::default(),
            tx_accepted: Counter::default(),
            tx_rejected: Family::default(),
            tx_preconfirmed: Counter::default(),
            pool_size: Gauge::default(),
            head_number: Gauge::default(),
            log_disk_free_bytes: Gauge::default(),
            preconf_latency_us: Histogram::new(micros_buckets()),
            seal_time_us: Histogram::new(micros_buckets()),
            fsync_time_us: Histogram::new(micros_buckets()),
            block_sign_time_us: Histogram::new(micros_buckets()),
            block_signed_latency_us: Histogram::new(micros_buckets()),
            signing_lag_blocks: Gauge::default(),
            blocks_sealed: Counter::default(),
            l1_reorg_rebuilt_blocks: Counter::default(),
            exec_speculated_txs: Counter::default(),
            exec_reexecuted_txs: Counter::default(),
            exec_sequential_txs: Counter::default(),
            udp_replies_dropped: Counter::default(),
            udp_rate_limited_datagrams: Counter::default(),
            rpc_connections_refused: Counter::default(),
            rpc_rate_limited: Counter::default(),
            ha_role: Gauge::default(),
            ha_epoch: Gauge::default(),
            ha_elections_won: Counter::default(),
            ha_fencing_refusals: Counter::default(),
            ha_replication_lag_records: Gauge::default(),
            batcher: BatcherMetrics::new(),
            ha_sync_wait_us: Histogram::new(micros_buckets()),
            net: NetMetrics::default(),
            net_sources: std::sync::OnceLock::new(),
            registry: Registry::default(),
        };
        registry.register("tx_received", "Transactions submitted", m.tx_received.clone());
        registry.register("tx_accepted", "Transactions admitted to the pool", m.tx_accepted.clone());
        registry.register("tx_rejected", "Transactions rejected, by reject code", m.tx_rejected.clone());
        registry.register(
            "tx_preconfirmed",
            "Transactions preconfirmed (durable in the batch log)",
            m.tx_preconfirmed.clone(),
        );
        registry.register("pool_size", "Transactions in the pool", m.pool_size.clone());
        registry.register("head_number", "Number of the last sealed block", m.head_number.clone());
        registry.register(
            "log_disk_free_bytes",
            "Free space on the batch log's file system, as last checked before a mini-block or seal",
            m.log_disk_free_bytes.clone(),
        );
        registry.register(
            "preconf_latency_us",
            "From submission to durable preconfirmation, microseconds",
            m.preconf_latency_us.clone(),
        );
        registry.register("seal_time_us", "Sealing a block (roots and header), microseconds", m.seal_time_us.clone());
        registry.register("fsync_time_us", "One batch log group commit, microseconds", m.fsync_time_us.clone());
        registry.register(
            "block_sign_time_us",
            "One block signature by the signer (guard, audit log and key or HSM), microseconds",
            m.block_sign_time_us.clone(),
        );
        registry.register(
            "block_signed_latency_us",
            "From a block's seal to its signature durable and published, microseconds",
            m.block_signed_latency_us.clone(),
        );
        registry.register("signing_lag_blocks", "Sealed blocks not yet signed", m.signing_lag_blocks.clone());
        registry.register("blocks_sealed", "Blocks sealed", m.blocks_sealed.clone());
        registry.register(
            "l1_reorg_rebuilt_blocks",
            "Unsafe blocks abandoned and rebuilt after L1 reorgs below their origins",
            m.l1_reorg_rebuilt_blocks.clone(),
        );
        registry.register(
            "exec_speculated_txs",
            "Transactions executed speculatively on the exec shards",
            m.exec_speculated_txs.clone(),
        );
        registry.register(
            "exec_reexecuted_txs",
            "Speculated transactions executed again because their reads changed",
            m.exec_reexecuted_txs.clone(),
        );
        registry.register(
            "exec_sequential_txs",
            "Transactions executed sequentially (one shard, small or conflicting windows)",
            m.exec_sequential_txs.clone(),
        );
        registry.register(
            "udp_replies_dropped",
            "UDP replies dropped: no free packet buffer or a full egress ring",
            m.udp_replies_dropped.clone(),
        );
        registry.register(
            "udp_rate_limited_datagrams",
            "UDP datagrams refused whole: their source was over udp.source_txs_per_s",
            m.udp_rate_limited_datagrams.clone(),
        );
        registry.register(
            "rpc_connections_refused",
            "JSON-RPC connections closed at accept: their client address was at rpc.connections_per_client_max",
            m.rpc_connections_refused.clone(),
        );
        registry.register(
            "rpc_rate_limited",
            "JSON-RPC calls answered -32005: their client address was over rpc.client_requests_per_s",
            m.rpc_rate_limited.clone(),
        );
        registry.register("ha_role", "High availability role: 0 single node, 1 standby, 2 leader", m.ha_role.clone());
        registry.register("ha_epoch", "The epoch of the leader this node leads or follows", m.ha_epoch.clone());
        registry.register("ha_elections_won", "Elections this node won", m.ha_elections_won.clone());
        registry.register(
            "ha_fencing_refusals",
            "Block signatures refused because etcd named a newer epoch than the asking leader's",
            m.ha_fencing_refusals.clone(),
        );
        registry.register(
            "ha_replication_lag_records",
            "Batch log records behind: a standby's own lag, or the leader's slowest standby",
            m.ha_replication_lag_records.clone(),
        );
        registry.register(
            "ha_sync_wait_us",
            "Sync replication: from a group commit to a standby's acknowledgement, microseconds",
            m.ha_sync_wait_us.clone(),
        );
        let net = &m.net;
        registry.register("net_received_datagrams", "Datagrams the net tile received", net.received.clone());
        registry.register("net_sent_replies", "Reply datagrams the net tile sent", net.replies_sent.clone());
        registry.register("net_dropped", "Datagrams the net tile dropped, by reason", net.dropped.clone());
        registry.register(
            "net_buffers_exhausted_polls",
            "Net tile polls that found no free packet buffer",
            net.buffers_exhausted_polls.clone(),
        );
        registry.register("net_backend_errors", "Errors of the NIC backend", net.backend_errors.clone());
        registry.register("net_ring_overruns", "Pushes refused by a full ring", net.ring_overruns.clone());
        registry.register("net_buffers_free", "Packet buffers free in the pool", net.buffers_free.clone());
        m.batcher.register(&mut registry);
        Self { registry, ..m }
    }

    /// Exports the dataplane's counters from now on.
    pub fn watch_net(&self, dataplane: &tephra_dataplane::Dataplane) {
        let _ = self.net_sources.set(NetSources {
            net: dataplane.net_stats.clone(),
            ingress: dataplane.ingress_stats.clone(),
            egress: dataplane.egress_stats.clone(),
            pool: dataplane.pool.clone(),
        });
    }

    fn refresh_net(&self) {
        let Some(sources) = self.net_sources.get() else { return };
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        let (net, stats) = (&self.net, &sources.net);
        net.received.inner().store(load(&stats.received), Ordering::Relaxed);
        net.replies_sent.inner().store(load(&stats.replies_sent), Ordering::Relaxed);
        net.dropped
            .get_or_create(&DropLabel { reason: "ingress_full" })
            .inner()
            .store(load(&stats.dropped_ingress_full), Ordering::Relaxed);
        net.dropped
            .get_or_create(&DropLabel { reason: "rate_limited" })
            .inner()
            .store(load(&stats.dropped_rate_limited), Ordering::Relaxed);
        net.dropped
            .get_or_create(&DropLabel { reason: "rate_limited_xdp" })
            .inner()
            .store(load(&stats.dropped_rate_limited_below), Ordering::Relaxed);
        net.buffers_exhausted_polls.inner().store(load(&stats.buffers_exhausted), Ordering::Relaxed);
        net.backend_errors.inner().store(load(&stats.backend_errors), Ordering::Relaxed);
        for (ring, source) in [("ingress", &sources.ingress), ("egress", &sources.egress)] {
            net.ring_overruns
                .get_or_create(&RingLabel { ring })
                .inner()
                .store(load(&source.overruns), Ordering::Relaxed);
        }
        net.buffers_free.set(i64::try_from(sources.pool.available()).unwrap_or(i64::MAX));
    }

    pub fn render(&self) -> String {
        self.refresh_net();
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Largest HTTP request head read from a metrics client.
const REQUEST_HEAD_MAX_BYTES: usize = 8192;

/// Serves GET /metrics, /health (the process is up) and /ready (the node has
/// replayed its log and is producing blocks; 503 with the reason while the
/// signer fails).
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, health: Arc<crate::health::Health>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let metrics = metrics.clone();
        let health = health.clone();
        tokio::spawn(async move {
            let mut head = vec![0u8; REQUEST_HEAD_MAX_BYTES];
            let mut filled = 0;
            while filled < head.len() {
                match stream.read(&mut head[filled..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => filled += n,
                }
                if head[..filled].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let line = String::from_utf8_lossy(&head[..filled]);
            let path = line.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = match path {
                "/metrics" => ("200 OK", metrics.render()),
                "/health" => ("200 OK", "ok\n".to_string()),
                "/ready" => match health.not_ready() {
                    Some(reason) => ("503 Service Unavailable", format!("not ready: {reason}\n")),
                    None => ("200 OK", "ready\n".to_string()),
                },
                _ => ("404 Not Found", "not found\n".to_string()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
