//! Packet buffers: one fixed-size buffer per datagram, all allocated when the
//! pool is made and recycled through it, so the hot path never allocates.

use crossbeam_queue::ArrayQueue;

use crate::frame::HEADERS_BYTES;
// `Peer` lives with the frames that carry it, so that frame.rs needs nothing
// of this module; its users keep finding it here.
pub use crate::frame::Peer;

/// The largest UDP payload a packet buffer holds: what fits, with its
/// headers, in one 4 KiB frame (the largest AF_XDP frame). A kernel-bypass
/// backend receives one Ethernet frame per datagram (no IP fragments), so this
/// bounds a request over `af_xdp` and `dpdk`; the `socket` backend marks a
/// longer datagram truncated and it is refused as malformed.
pub const PAYLOAD_SIZE_MAX_BYTES: usize = FRAME_SIZE_MAX_BYTES - HEADERS_BYTES;
/// The largest Ethernet frame the dataplane builds or takes.
pub const FRAME_SIZE_MAX_BYTES: usize = 4096;

/// One UDP payload and its peer.
#[derive(Debug)]
pub struct Packet {
    pub peer: Peer,
    len: usize,
    /// Set when the datagram was longer than the buffer: its bytes are cut.
    pub truncated: bool,
    data: [u8; PAYLOAD_SIZE_MAX_BYTES],
}

impl Packet {
    fn empty() -> Box<Self> {
        Box::new(Self { peer: Peer::default(), len: 0, truncated: false, data: [0; PAYLOAD_SIZE_MAX_BYTES] })
    }

    pub fn payload(&self) -> &[u8] {
        &self.data[..self.len]
    }

    /// The whole buffer, to receive into; `set_len` then marks what arrived.
    pub fn buffer_mut(&mut self) -> &mut [u8; PAYLOAD_SIZE_MAX_BYTES] {
        &mut self.data
    }

    pub fn set_len(&mut self, len: usize) {
        assert!(len <= PAYLOAD_SIZE_MAX_BYTES, "payload of {len} bytes overflows the buffer");
        self.len = len;
    }

    /// Replaces the payload with `bytes`; false (and unchanged) when it does not fit.
    pub fn fill(&mut self, bytes: &[u8]) -> bool {
        let Some(buffer) = self.data.get_mut(..bytes.len()) else { return false };
        buffer.copy_from_slice(bytes);
        self.len = bytes.len();
        self.truncated = false;
        true
    }
}

/// A bounded pool of packet buffers, shared by the tiles that pass them
/// around (lock-free, any thread may take or give back).
#[derive(Debug)]
pub struct PacketPool {
    free: ArrayQueue<Box<Packet>>,
}

impl PacketPool {
    /// Allocates all `capacity` buffers now.
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "a packet pool needs buffers");
        let free = ArrayQueue::new(capacity);
        for _ in 0..capacity {
            free.push(Packet::empty()).expect("sized to capacity");
        }
        Self { free }
    }

    /// A free buffer, or None when all are in flight (the caller backs off).
    pub fn take(&self) -> Option<Box<Packet>> {
        self.free.pop()
    }

    pub fn give_back(&self, mut packet: Box<Packet>) {
        packet.len = 0;
        packet.truncated = false;
        // Only buffers of this pool circulate, so there is always room.
        assert!(self.free.push(packet).is_ok(), "a buffer from outside the pool was given back");
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }

    pub fn capacity(&self) -> usize {
        self.free.capacity()
    }
}
