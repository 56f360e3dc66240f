//! NIC backends behind one trait. Each receives UDP datagrams for tephra's
//! port into packet buffers and sends reply packets; the net tile moves them
//! between the backend and the rings, the same for every backend.

use std::io;

use serde::Deserialize;

use crate::packet::Packet;

pub mod af_xdp;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod socket;

/// A NIC path: polled, never blocking, allocation-free after `open`.
pub trait Backend: Send {
    /// The configured name ("socket", "af_xdp", "dpdk").
    fn name(&self) -> &'static str;

    /// Receives up to `packets.len()` datagrams into the buffers, in order, and
    /// returns how many arrived (0 when none is waiting).
    fn receive(&mut self, packets: &mut [Box<Packet>]) -> io::Result<usize>;

    /// Queues reply packets to their peers and returns how many were taken
    /// (fewer when the transmit ring is full: the caller keeps the rest).
    fn send(&mut self, packets: &[Box<Packet>]) -> io::Result<usize>;

    /// Completes queued sends and reclaims transmit buffers.
    fn flush(&mut self) -> io::Result<()>;

    /// Datagrams dropped below the backend for their source's rate (the
    /// XDP program's count), in total; 0 for backends without such a filter.
    fn dropped_by_source_limit(&mut self) -> u64 {
        0
    }

    /// Waits in the kernel until a datagram or a completion arrives, the
    /// `doorbell` eventfd is written, or `timeout` passes. `Ok(false)`: this
    /// backend cannot wait so, and the tile sleeps instead.
    fn wait(&mut self, _timeout: std::time::Duration, _doorbell: std::os::fd::BorrowedFd<'_>) -> io::Result<bool> {
        Ok(false)
    }
}

/// A per-source datagram limit for a filter below the net tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceLimit {
    pub datagrams_per_s: u32,
    pub burst_datagrams: u32,
}

/// Which backend the net tile runs.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    Socket,
    AfXdp,
    Dpdk,
}

/// `[net.dpdk]`: read whether or not this build has the `dpdk` feature, so
/// one config file serves every build.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DpdkConfig {
    /// The EAL's command line, without the program name.
    pub eal_args: Vec<String>,
    /// The DPDK port to run (ports are numbered in probe order from 0).
    pub port_id: u16,
    /// Receive and transmit ring descriptors (adjusted to the device's limits).
    pub rx_queue_depth: u16,
    pub tx_queue_depth: u16,
    /// mbufs in the pool: at least both ring depths and two bursts.
    pub mbufs: u32,
    /// The most frames one receive or send handles (mbuf arrays are this long).
    pub burst_size: u16,
    /// Bytes of frame an mbuf holds past DPDK's headroom: the longest frame.
    pub mbuf_data_room: u16,
    /// Receive frames for any MAC address (not needed for our own).
    pub promiscuous: bool,
}
