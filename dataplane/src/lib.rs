//! tephra's dataplane: topology, the per-core runtime, rings, and the NIC
//! backends that feed the verify stage (README.md).

pub mod backend;
pub mod configure;
pub mod frame;
pub mod net;
pub mod netns;
pub mod packet;
pub mod ratelimit;
pub mod ring;
pub mod runtime;
pub mod topology;

use std::{
    net::{SocketAddrV4, UdpSocket},
    sync::Arc,
};

use serde::Deserialize;

use crate::{
    backend::{
        BackendKind, DpdkConfig, SourceLimit,
        af_xdp::{AfXdpBackend, AfXdpConfig},
        socket::{SOCKET_SLOTS_MAX, SocketBackend},
    },
    net::{NET_BURST_MAX, NetStats, NetTile, Wake},
    packet::{Packet, PacketPool},
    ratelimit::RateLimiter,
    ring::{Consumer, Producer, RingStats},
    runtime::{Idle, Runtime, Tile},
};

/// The verify stage's end of the ingress ring.
pub type PacketConsumer = Consumer<Box<Packet>>;
/// The verify stage's end of the egress ring.
pub type PacketProducer = Producer<Box<Packet>>;

/// Packet buffers at most.
pub const PACKET_BUFFERS_MAX: usize = 1 << 20;
/// Ring slots at most.
pub const RING_DEPTH_MAX: usize = 1 << 20;
/// Most source addresses the net tile's rate limiter tracks (`net.sources_max`).
pub const SOURCES_MAX: usize = 1 << 22;

/// `[net]`: the NIC path for UDP ingress.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    pub backend: BackendKind,
    pub packet_buffers: usize,
    pub ingress_ring_depth: usize,
    pub egress_ring_depth: usize,
    pub burst: usize,
    pub busy_poll: bool,
    pub idle_sleep_us: u64,
    pub socket_rx_slots: usize,
    pub socket_tx_slots: usize,
    pub source_datagrams_per_s: u32,
    pub source_burst_datagrams: u32,
    pub sources_max: usize,
    pub af_xdp: AfXdpConfig,
    pub dpdk: DpdkConfig,
}

impl NetConfig {
    /// Checks the bounds; the error names the key.
    pub fn check(&self) -> Result<(), NetConfigError> {
        let within = |key: &'static str, value: usize, min: usize, max: usize| {
            if (min..=max).contains(&value) { Ok(()) } else { Err(NetConfigError::OutOfRange { key, value, min, max }) }
        };
        within("net.burst", self.burst, 1, NET_BURST_MAX)?;
        within("net.ingress_ring_depth", self.ingress_ring_depth, 1, RING_DEPTH_MAX)?;
        within("net.egress_ring_depth", self.egress_ring_depth, 1, RING_DEPTH_MAX)?;
        within("net.socket_rx_slots", self.socket_rx_slots, 1, SOCKET_SLOTS_MAX)?;
        within("net.socket_tx_slots", self.socket_tx_slots, 1, SOCKET_SLOTS_MAX)?;
        if self.source_datagrams_per_s > 0 {
            within("net.source_burst_datagrams", self.source_burst_datagrams as usize, 1, u32::MAX as usize)?;
            within("net.sources_max", self.sources_max, 1, SOURCES_MAX)?;
        }
        // Every buffer the tile and both rings can hold at once, and as many
        // again for datagrams being answered.
        let held = 2 * self.burst + self.ingress_ring_depth + self.egress_ring_depth;
        if (held..=PACKET_BUFFERS_MAX).contains(&self.packet_buffers) {
            Ok(())
        } else {
            Err(NetConfigError::PacketBuffers { value: self.packet_buffers, held, max: PACKET_BUFFERS_MAX })
        }
    }
}

/// A `[net]` key outside its bounds, as `NetConfig::check` finds it.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetConfigError {
    /// `key` (`net.burst`, say) is `value`, outside `min..=max`.
    #[error("{key}: {value} is outside {min}..={max}")]
    OutOfRange { key: &'static str, value: usize, min: usize, max: usize },
    /// `net.packet_buffers` is `value`: fewer than the `held` buffers the
    /// rings and bursts can hold at once, or above `max`.
    #[error("net.packet_buffers: {value} is outside {held}..={max} (rings and bursts hold {held})")]
    PacketBuffers { value: usize, held: usize, max: usize },
}

impl NetConfigError {
    /// The key outside its bounds (`net.burst`, say).
    pub fn key(&self) -> &'static str {
        match self {
            Self::OutOfRange { key, .. } => key,
            Self::PacketBuffers { .. } => "net.packet_buffers",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("[net] {0}")]
    Config(#[from] NetConfigError),
    #[error("udp.listen {address}: {error}")]
    Bind { address: SocketAddrV4, error: std::io::Error },
    #[error(transparent)]
    AfXdp(#[from] backend::af_xdp::AfXdpError),
    #[error("net.backend = \"dpdk\" needs a build with the dpdk feature (cargo build --features dpdk)")]
    NoDpdk,
    #[cfg(feature = "dpdk")]
    #[error(transparent)]
    Dpdk(#[from] backend::dpdk::DpdkError),
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    #[error("the egress ring's eventfd: {0}")]
    Doorbell(std::io::Error),
}

/// The running net tile. `start` also hands over the ends of its rings
/// that the verify stage holds: ingress to pop, egress to push replies.
#[derive(Debug)]
pub struct Dataplane {
    runtime: Runtime,
    pub backend: &'static str,
    /// Where datagrams are received (the bound port when `listen` named 0).
    pub local_addr: SocketAddrV4,
    pub pool: Arc<PacketPool>,
    pub net_stats: Arc<NetStats>,
    pub ingress_stats: Arc<RingStats>,
    pub egress_stats: Arc<RingStats>,
}

impl Dataplane {
    /// Opens the configured backend on `listen` and starts the net tile on
    /// `core`; `wake` is called when datagrams were pushed to `ingress`.
    pub fn start(
        config: &NetConfig,
        listen: SocketAddrV4,
        core: usize,
        wake: Wake,
    ) -> Result<(Self, PacketConsumer, PacketProducer), DataplaneError> {
        config.check()?;
        let pool = Arc::new(PacketPool::new(config.packet_buffers));
        let (ingress_producer, ingress, ingress_stats) = ring::ring(config.ingress_ring_depth);
        // Replies ring the net tile's doorbell: an idle tile waits in the
        // kernel instead of polling a timer.
        let (egress, egress_consumer, egress_stats) =
            ring::ring_with_doorbell(config.egress_ring_depth).map_err(DataplaneError::Doorbell)?;
        let idle = Idle { busy_poll: config.busy_poll, sleep_us: config.idle_sleep_us };
        let tile = |backend: Box<dyn Tile>| Runtime::start(vec![(core, vec![backend])], idle);
        // One limit, applied by the tile and, with af_xdp, by the XDP program too.
        let source_limit = (config.source_datagrams_per_s > 0).then_some(SourceLimit {
            datagrams_per_s: config.source_datagrams_per_s,
            burst_datagrams: config.source_burst_datagrams,
        });
        let limit = || {
            source_limit.map(|l| {
                RateLimiter::new(l.datagrams_per_s, l.burst_datagrams, config.sources_max, std::time::Instant::now())
            })
        };
        let (runtime, local_addr, net_stats, name) = match config.backend {
            BackendKind::Socket => {
                let socket =
                    UdpSocket::bind(listen).map_err(|error| DataplaneError::Bind { address: listen, error })?;
                let local_addr = match socket.local_addr() {
                    Ok(std::net::SocketAddr::V4(address)) => address,
                    _ => listen,
                };
                let backend = SocketBackend::open(socket, config.socket_rx_slots, config.socket_tx_slots)
                    .map_err(|error| DataplaneError::Bind { address: listen, error })?;
                let (net, stats) =
                    NetTile::new(backend, pool.clone(), ingress_producer, egress_consumer, wake, config.burst, limit());
                (tile(Box::new(net))?, local_addr, stats, "socket")
            }
            BackendKind::AfXdp => {
                let backend = AfXdpBackend::open(&config.af_xdp, *listen.ip(), listen.port(), source_limit)?;
                let (net, stats) =
                    NetTile::new(backend, pool.clone(), ingress_producer, egress_consumer, wake, config.burst, limit());
                (tile(Box::new(net))?, listen, stats, "af_xdp")
            }
            #[cfg(feature = "dpdk")]
            BackendKind::Dpdk => {
                let backend = backend::dpdk::DpdkBackend::open(&config.dpdk, *listen.ip(), listen.port())?;
                let (net, stats) =
                    NetTile::new(backend, pool.clone(), ingress_producer, egress_consumer, wake, config.burst, limit());
                (tile(Box::new(net))?, listen, stats, "dpdk")
            }
            #[cfg(not(feature = "dpdk"))]
            BackendKind::Dpdk => return Err(DataplaneError::NoDpdk),
        };
        tracing::info!(backend = name, %local_addr, core, busy_poll = config.busy_poll, "net tile started");
        Ok((Self { runtime, backend: name, local_addr, pool, net_stats, ingress_stats, egress_stats }, ingress, egress))
    }

    /// Stops the net tile (the backend closes, the XDP program detaches).
    pub fn stop(self) {
        self.runtime.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[net]` as config/default.toml sets it.
    fn defaults() -> NetConfig {
        #[derive(Deserialize)]
        struct Defaults {
            net: NetConfig,
        }
        let defaults: Defaults =
            toml::from_str(include_str!("../../config/default.toml")).expect("config/default.toml");
        defaults.net
    }

    #[test]
    fn a_bound_broken_is_refused_naming_the_key_value_and_range() {
        defaults().check().unwrap();
        let error = NetConfig { burst: 0, ..defaults() }.check().unwrap_err();
        assert_eq!(error, NetConfigError::OutOfRange { key: "net.burst", value: 0, min: 1, max: NET_BURST_MAX });
        assert_eq!(error.to_string(), format!("net.burst: 0 is outside 1..={NET_BURST_MAX}"));
        // The source table is bounded only while the limit is on.
        let off = NetConfig { source_datagrams_per_s: 0, sources_max: 0, ..defaults() };
        off.check().unwrap();
        let on = NetConfig { source_datagrams_per_s: 1, ..off };
        assert_eq!(on.check().unwrap_err().key(), "net.sources_max");
        let short =
            NetConfig { burst: 2, ingress_ring_depth: 8, egress_ring_depth: 8, packet_buffers: 19, ..defaults() };
        let error = short.check().unwrap_err();
        assert_eq!(error, NetConfigError::PacketBuffers { value: 19, held: 20, max: PACKET_BUFFERS_MAX });
        assert_eq!(error.key(), "net.packet_buffers");
        assert_eq!(
            DataplaneError::from(error).to_string(),
            format!("[net] net.packet_buffers: 19 is outside 20..={PACKET_BUFFERS_MAX} (rings and bursts hold 20)")
        );
        NetConfig { packet_buffers: 20, ..short }.check().unwrap();
    }
}
