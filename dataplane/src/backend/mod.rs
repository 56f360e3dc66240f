//! NIC backends behind one trait. Each receives UDP datagrams for tephra's
//! port into packet buffers and sends reply packets; the net tile moves them
//! between the backend and the rings, the same for every backend.

use std::io;

use serde::Deserialize;

use crate::packet::Packet;

pub mod af_xdp;
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
}

/// Which backend the net tile runs.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    Socket,
    AfXdp,
    Dpdk,
}
