//! The `socket` backend: a kernel UDP socket driven through a raw io_uring.
//! One multishot recvmsg stays armed on the socket and takes each datagram
//! into a buffer of a provided-buffer ring registered at open; the datagram
//! is copied into the net tile's packet buffer and its ring buffer handed
//! back. Replies are copied into `tx_slots` send buffers and submitted as a
//! batch. Nothing allocates after `open`. (glommio's `UdpSocket` allocates
//! per operation, which the counting-allocator test forbids on this path.)
//!
//! Why one multishot receive and not many posted recvmsg: a recvmsg posted
//! on an empty socket arms a poll on it, and every armed poll is woken by
//! each datagram (none is exclusive), so with 256 posted the kernel retried
//! 256 receives per datagram: 0.40x the recvmmsg baseline and most of a
//! core at 50,000 datagrams/s (docs/benchmarks.md).
#![allow(unsafe_code)]

use std::{
    alloc::{self, Layout},
    collections::VecDeque,
    io, mem,
    net::{SocketAddrV4, UdpSocket},
    os::fd::{AsRawFd, BorrowedFd},
    ptr::NonNull,
    sync::atomic::{AtomicU16, Ordering},
    time::Duration,
};

use io_uring::{IoUring, cqueue, opcode, types};

use super::Backend;
use crate::packet::{PAYLOAD_SIZE_MAX_BYTES, Packet, Peer};

/// Slots of either kind at most (a provided-buffer ring holds at most 2^15).
pub const SOCKET_SLOTS_MAX: usize = 4096;
const TX_FLAG: u64 = 1 << 31;
/// The user data of the doorbell's eventfd read (no slot index reaches it).
const DOORBELL: u64 = 1 << 40;
/// The user data of the multishot receive.
const RECEIVE: u64 = 1 << 41;
/// The provided-buffer group of the receive ring.
const BUFFER_GROUP: u16 = 0;
#[expect(clippy::cast_possible_truncation, reason = "AF_INET is 2")]
const AF_INET: libc::sa_family_t = libc::AF_INET as libc::sa_family_t;
#[expect(clippy::cast_possible_truncation, reason = "16 bytes")]
const SOCKADDR_IN_BYTES: u32 = mem::size_of::<libc::sockaddr_in>() as u32;
/// A multishot recvmsg writes its header (16 bytes), then the source
/// address, then the payload into each buffer: one page holds the largest
/// datagram tephra takes; a longer one arrives truncated (`MSG_TRUNC`).
const RX_BUFFER_BYTES: usize = 4096;
const _: () = assert!(16 + SOCKADDR_IN_BYTES as usize + PAYLOAD_SIZE_MAX_BYTES <= RX_BUFFER_BYTES);

struct TxSlot {
    msg: libc::msghdr,
    iov: libc::iovec,
    addr: libc::sockaddr_in,
    buffer: Box<[u8; PAYLOAD_SIZE_MAX_BYTES]>,
}

/// The provided-buffer ring of the receive side: `buffers` page-sized
/// buffers, each either lent to the kernel through the ring or held by a
/// completion not yet taken.
struct BufferRing {
    /// Page-aligned ring entries, shared with the kernel.
    entries: NonNull<types::BufRingEntry>,
    entry_count: u16,
    /// The next tail to publish (the kernel reads the published one).
    tail: u16,
    buffers: Box<[u8]>,
}

impl BufferRing {
    fn layout(entry_count: u16) -> Layout {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let bytes = usize::from(entry_count) * mem::size_of::<types::BufRingEntry>();
        Layout::from_size_align(bytes.next_multiple_of(page), page).expect("a page-aligned layout")
    }

    fn new(buffer_count: usize) -> Self {
        let entry_count = u16::try_from(buffer_count.next_power_of_two()).expect("at most SOCKET_SLOTS_MAX");
        // SAFETY: a non-zero size; zeroed entries are empty.
        let entries = unsafe { alloc::alloc_zeroed(Self::layout(entry_count)) };
        let entries =
            NonNull::new(entries.cast()).unwrap_or_else(|| alloc::handle_alloc_error(Self::layout(entry_count)));
        let mut ring = Self { entries, entry_count, tail: 0, buffers: vec![0; buffer_count * RX_BUFFER_BYTES].into() };
        for id in 0..buffer_count {
            ring.lend(u16::try_from(id).expect("at most SOCKET_SLOTS_MAX"));
        }
        ring.publish();
        ring
    }

    fn buffer_count(&self) -> usize {
        self.buffers.len() / RX_BUFFER_BYTES
    }

    fn buffer(&self, id: u16) -> &[u8] {
        let start = usize::from(id) * RX_BUFFER_BYTES;
        &self.buffers[start..start + RX_BUFFER_BYTES]
    }

    /// Puts buffer `id` back in the ring; the kernel sees it at `publish`.
    fn lend(&mut self, id: u16) {
        let addr = self.buffer(id).as_ptr() as u64;
        let slot = usize::from(self.tail & (self.entry_count - 1));
        // SAFETY: slot < entry_count, inside the allocation; the kernel reads
        // only entries below the published tail, and this one is above it.
        let entry = unsafe { &mut *self.entries.as_ptr().add(slot) };
        entry.set_addr(addr);
        entry.set_len(u32::try_from(RX_BUFFER_BYTES).expect("a page"));
        entry.set_bid(id);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field lies in the first entry of the live ring; the
        // kernel reads it concurrently, hence the atomic release store, which
        // also orders the entries written before it.
        let tail = unsafe { &*types::BufRingEntry::tail(self.entries.as_ptr()).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufferRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the io_uring that read
        // it was dropped first (field order of SocketBackend).
        unsafe { alloc::dealloc(self.entries.as_ptr().cast(), Self::layout(self.entry_count)) };
    }
}

/// io_uring receive and send on one UDP socket.
pub struct SocketBackend {
    socket: UdpSocket,
    /// Dropped before `rx_buffers`, which the kernel may read until then.
    ring: IoUring,
    rx_buffers: BufferRing,
    /// The multishot receive's header: the kernel reads its name and
    /// control lengths (the source address, no control data).
    rx_msg: Box<libc::msghdr>,
    /// Whether the multishot receive is armed (it ends when the ring runs
    /// out of buffers, and is armed again once buffers come back).
    rx_armed: bool,
    /// Buffers holding a received datagram (id, bytes), oldest first: at
    /// most one per buffer, so the queue never grows past its capacity.
    rx_ready: VecDeque<(u16, usize)>,
    /// Whether a send or flush reaped datagrams after the last receive.
    rx_reaped: bool,
    tx: Box<[TxSlot]>,
    tx_free: Vec<usize>,
    /// Entries pushed but not yet submitted to the kernel.
    unsubmitted: usize,
    /// Where the doorbell's eventfd read lands, and whether one is posted.
    doorbell_value: Box<[u8; 8]>,
    doorbell_posted: bool,
    pub receive_errors: u64,
    pub send_errors: u64,
}

// SAFETY: the raw pointers in the slots and the buffer ring point only into
// the backend's own allocations, which move with it; nothing else shares them.
unsafe impl Send for SocketBackend {}

impl std::fmt::Debug for SocketBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketBackend")
            .field("socket", &self.socket)
            .field("rx_buffers", &self.rx_buffers.buffer_count())
            .finish()
    }
}

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: AF_INET,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(addr.ip().octets()) },
        sin_zero: [0; 8],
    }
}

fn zeroed_msghdr() -> libc::msghdr {
    // SAFETY: msghdr is plain old data; all-zero is its empty value.
    unsafe { mem::zeroed() }
}

/// A header for one datagram: its address and its one buffer, both in the slot.
fn message_header(addr: &mut libc::sockaddr_in, iov: &mut libc::iovec) -> libc::msghdr {
    let mut msg = zeroed_msghdr();
    msg.msg_name = std::ptr::from_mut(addr).cast();
    msg.msg_namelen = SOCKADDR_IN_BYTES;
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg
}

/// The source of a datagram from the address a multishot recvmsg wrote.
fn peer_of(name: &[u8]) -> Option<Peer> {
    if name.len() < SOCKADDR_IN_BYTES as usize {
        return None;
    }
    // SAFETY: at least a sockaddr_in's bytes, read unaligned.
    let addr = unsafe { name.as_ptr().cast::<libc::sockaddr_in>().read_unaligned() };
    let ip = addr.sin_addr.s_addr.to_ne_bytes();
    (addr.sin_family == AF_INET)
        .then(|| Peer { addr: SocketAddrV4::new(ip.into(), u16::from_be(addr.sin_port)), mac: [0; 6] })
}

impl SocketBackend {
    /// Takes a bound socket, registers `rx_buffers` receive buffers and arms
    /// the receive; `tx_slots` replies may be in flight.
    pub fn open(socket: UdpSocket, rx_buffers: usize, tx_slots: usize) -> io::Result<Self> {
        assert!((1..=SOCKET_SLOTS_MAX).contains(&rx_buffers) && (1..=SOCKET_SLOTS_MAX).contains(&tx_slots));
        let entries = u32::try_from((tx_slots + 2).next_power_of_two()).expect("at most SOCKET_SLOTS_MAX + 2");
        // Room for a completion per receive buffer, send slot, the doorbell
        // and the receive's last, so that none waits in the kernel's overflow.
        let completions = u32::try_from((rx_buffers + tx_slots + 2).next_power_of_two()).expect("bounded slots");
        // Task work (a datagram's completion) runs when the tile next enters
        // the kernel instead of interrupting it; the task-run flag tells a
        // busy-polling tile, which may make no other system call, to enter.
        // Not SINGLE_ISSUER: the ring is made here and driven from the tile's thread.
        let ring =
            IoUring::builder().setup_cqsize(completions).setup_coop_taskrun().setup_taskrun_flag().build(entries)?;
        let rx_buffers = BufferRing::new(rx_buffers);
        // SAFETY: the ring's entries stay allocated, at the same address,
        // until after the io_uring is dropped (field order).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                rx_buffers.entries.as_ptr() as u64,
                rx_buffers.entry_count,
                BUFFER_GROUP,
                0,
            )?;
        }
        let mut rx_msg = Box::new(zeroed_msghdr());
        rx_msg.msg_namelen = SOCKADDR_IN_BYTES;
        let tx = (0..tx_slots)
            .map(|_| TxSlot {
                msg: zeroed_msghdr(),
                iov: libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 },
                addr: sockaddr(SocketAddrV4::new([0, 0, 0, 0].into(), 0)),
                buffer: Box::new([0; PAYLOAD_SIZE_MAX_BYTES]),
            })
            .collect();
        let buffer_count = rx_buffers.buffer_count();
        let mut backend = Self {
            socket,
            ring,
            rx_buffers,
            rx_msg,
            rx_armed: false,
            rx_ready: VecDeque::with_capacity(buffer_count),
            rx_reaped: false,
            tx,
            tx_free: (0..tx_slots).rev().collect(),
            unsubmitted: 0,
            doorbell_value: Box::new([0; 8]),
            doorbell_posted: false,
            receive_errors: 0,
            send_errors: 0,
        };
        backend.arm_receive()?;
        backend.submit()?;
        // A kernel without multishot recvmsg (before 6.0) refuses the receive
        // at once: say so here rather than receive nothing.
        backend.reap()?;
        if !backend.rx_armed {
            return Err(io::Error::other("io_uring refused a multishot recvmsg (it needs Linux 6.0 or newer)"));
        }
        Ok(backend)
    }

    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.socket.local_addr()
    }

    /// The multishot receive ended and a buffer is free for it again.
    fn receive_to_arm(&self) -> bool {
        !self.rx_armed && self.rx_ready.len() < self.rx_buffers.buffer_count()
    }

    fn arm_receive(&mut self) -> io::Result<()> {
        let fd = types::Fd(self.socket.as_raw_fd());
        let entry = opcode::RecvMsgMulti::new(fd, &raw const *self.rx_msg, BUFFER_GROUP).build().user_data(RECEIVE);
        self.push(&entry)?;
        self.rx_armed = true;
        Ok(())
    }

    fn push(&mut self, entry: &io_uring::squeue::Entry) -> io::Result<()> {
        // The ring has an entry for every send slot, the receive and the
        // doorbell, each with at most one operation in flight, so the queue
        // cannot be full after a submit.
        // SAFETY: the entry's msghdr, iovec, address and buffer live in a
        // boxed slot that is not touched again until its completion is reaped.
        if unsafe { self.ring.submission().push(entry) }.is_err() {
            self.submit()?;
            // SAFETY: as above.
            unsafe { self.ring.submission().push(entry) }.map_err(|_| io::Error::other("io_uring queue full"))?;
        }
        self.unsubmitted += 1;
        Ok(())
    }

    fn submit(&mut self) -> io::Result<()> {
        if self.unsubmitted > 0 {
            self.ring.submit()?;
            self.unsubmitted = 0;
        }
        Ok(())
    }

    /// Moves completions into the ready queue and frees send slots, first
    /// entering the kernel if it holds task work or overflowed completions
    /// (a busy-polling tile may make no other system call).
    fn reap(&mut self) -> io::Result<()> {
        let pending = {
            let submission = self.ring.submission();
            submission.taskrun() || submission.cq_overflow()
        };
        if pending {
            self.ring.submit()?;
            self.unsubmitted = 0;
        }
        for entry in self.ring.completion() {
            let user_data = entry.user_data();
            if user_data == DOORBELL {
                // Drained the eventfd: posted again at the next wait.
                self.doorbell_posted = false;
            } else if user_data == RECEIVE {
                if !cqueue::more(entry.flags()) {
                    // Out of buffers (ENOBUFS) or failed: armed again in `receive`.
                    self.rx_armed = false;
                }
                match (usize::try_from(entry.result()), cqueue::buffer_select(entry.flags())) {
                    (Ok(bytes), Some(id)) => {
                        self.rx_ready.push_back((id, bytes));
                        self.rx_reaped = true;
                    }
                    _ if entry.result() == -libc::ENOBUFS => {}
                    _ => self.receive_errors += 1,
                }
            } else {
                if entry.result() < 0 {
                    self.send_errors += 1;
                }
                self.tx_free.push(usize::try_from(user_data & !TX_FLAG).expect("a slot index"));
            }
        }
        Ok(())
    }
}

impl Backend for SocketBackend {
    fn name(&self) -> &'static str {
        "socket"
    }

    fn receive(&mut self, packets: &mut [Box<Packet>]) -> io::Result<usize> {
        self.reap()?;
        self.rx_reaped = false;
        let mut received = 0;
        let mut lent = false;
        while received < packets.len() {
            let Some((id, bytes)) = self.rx_ready.pop_front() else { break };
            let buffer = &self.rx_buffers.buffer(id)[..bytes];
            let out = types::RecvMsgOut::parse(buffer, &self.rx_msg).ok();
            match out.as_ref().and_then(|out| Some((out, peer_of(out.name_data())?))) {
                Some((out, peer)) => {
                    // A longer datagram is cut to the buffer and refused as malformed.
                    let payload = out.payload_data();
                    let kept = payload.len().min(PAYLOAD_SIZE_MAX_BYTES);
                    let packet = &mut packets[received];
                    packet.fill(&payload[..kept]);
                    packet.truncated = out.is_payload_truncated() || kept < payload.len();
                    packet.peer = peer;
                    received += 1;
                }
                None => self.receive_errors += 1,
            }
            self.rx_buffers.lend(id);
            lent = true;
        }
        if lent {
            self.rx_buffers.publish();
        }
        if self.receive_to_arm() {
            self.arm_receive()?;
        }
        self.submit()?;
        Ok(received)
    }

    fn send(&mut self, packets: &[Box<Packet>]) -> io::Result<usize> {
        self.reap()?;
        let fd = types::Fd(self.socket.as_raw_fd());
        let mut sent = 0;
        for packet in packets {
            let Some(index) = self.tx_free.pop() else { break };
            let slot = &mut self.tx[index];
            let payload = packet.payload();
            slot.buffer[..payload.len()].copy_from_slice(payload);
            slot.addr = sockaddr(packet.peer.addr);
            slot.iov = libc::iovec { iov_base: slot.buffer.as_mut_ptr().cast(), iov_len: payload.len() };
            slot.msg = message_header(&mut slot.addr, &mut slot.iov);
            let entry = opcode::SendMsg::new(fd, &raw const slot.msg).build().user_data(index as u64 | TX_FLAG);
            self.push(&entry)?;
            sent += 1;
        }
        self.submit()?;
        Ok(sent)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.submit()?;
        self.reap()
    }

    fn wait(&mut self, timeout: Duration, doorbell: BorrowedFd<'_>) -> io::Result<bool> {
        // Datagrams a send or flush reaped after the last receive, or a
        // receive to arm again with buffers free: nothing in the kernel would
        // end this wait. (Datagrams held while the tile has no packet buffer
        // to take them wait for the doorbell: replies sent free buffers.)
        if self.rx_reaped || self.receive_to_arm() {
            return Ok(true);
        }
        if !self.doorbell_posted {
            let read = opcode::Read::new(types::Fd(doorbell.as_raw_fd()), self.doorbell_value.as_mut_ptr(), 8);
            self.push(&read.build().user_data(DOORBELL))?;
            self.doorbell_posted = true;
        }
        let timespec = types::Timespec::from(timeout);
        let args = types::SubmitArgs::new().timespec(&timespec);
        // Returns at once if a completion is already waiting to be reaped.
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(error) if matches!(error.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => {}
            Err(error) => return Err(error),
        }
        self.unsubmitted = 0;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::PacketPool;

    /// Receives until `count` datagrams arrived (bounded in time).
    #[expect(clippy::vec_box, reason = "packet buffers as the net tile holds them")]
    fn receive_all(backend: &mut SocketBackend, pool: &PacketPool, count: usize) -> Vec<Box<Packet>> {
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while got.len() < count && std::time::Instant::now() < deadline {
            // Two at a time, so that datagrams wait in the ring and the socket.
            let mut packets: Vec<Box<Packet>> = (0..2).map(|_| pool.take().unwrap()).collect();
            let received = backend.receive(&mut packets).unwrap();
            got.extend(packets.drain(..received));
            for packet in packets {
                pool.give_back(packet);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        got
    }

    /// A send reaps every completion, datagrams too: the wait that follows
    /// must not sleep on them (nothing in the kernel would end it).
    #[test]
    fn datagrams_a_send_reaped_end_the_next_wait_at_once() {
        use std::os::fd::{FromRawFd, OwnedFd};
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = socket.local_addr().unwrap();
        let mut backend = SocketBackend::open(socket, 8, 8).unwrap();
        // SAFETY: a new eventfd, owned from here on.
        let doorbell = unsafe { OwnedFd::from_raw_fd(libc::eventfd(0, libc::EFD_NONBLOCK)) };
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.send_to(&[1; 10], address).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let pool = PacketPool::new(4);
        let mut reply = pool.take().unwrap();
        reply.fill(&[2; 10]);
        reply.peer = Peer {
            addr: match client.local_addr().unwrap() {
                std::net::SocketAddr::V4(addr) => addr,
                std::net::SocketAddr::V6(_) => unreachable!("bound to IPv4"),
            },
            mac: [0; 6],
        };
        assert_eq!(backend.send(&[reply]).unwrap(), 1);
        let started = std::time::Instant::now();
        backend.wait(Duration::from_secs(5), std::os::fd::AsFd::as_fd(&doorbell)).unwrap();
        assert!(started.elapsed() < Duration::from_secs(2), "waited {:?} with a datagram ready", started.elapsed());
        assert_eq!(receive_all(&mut backend, &pool, 1).len(), 1);
    }

    #[test]
    fn more_datagrams_than_buffers_all_arrive_in_order_and_a_long_one_is_marked_truncated() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = socket.local_addr().unwrap();
        // Four buffers for forty datagrams: the multishot receive runs out of
        // buffers (ENOBUFS), the rest wait in the socket, and it is armed again.
        let mut backend = SocketBackend::open(socket, 4, 4).unwrap();
        let pool = PacketPool::new(64);
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..40u8 {
            client.send_to(&[i; 100], address).unwrap();
        }
        let got = receive_all(&mut backend, &pool, 40);
        assert_eq!(got.len(), 40, "every datagram arrives once buffers come back");
        for (i, packet) in got.iter().enumerate() {
            assert_eq!(packet.payload(), &[u8::try_from(i).unwrap(); 100], "in order");
            assert!(!packet.truncated);
            assert_eq!(std::net::SocketAddr::V4(packet.peer.addr), client.local_addr().unwrap());
        }
        for packet in got {
            pool.give_back(packet);
        }
        // Longer than a packet buffer: cut, marked, and refused upstream.
        for length in [PAYLOAD_SIZE_MAX_BYTES + 1, 5_000, 60_000] {
            client.send_to(&vec![7; length], address).unwrap();
            let got = receive_all(&mut backend, &pool, 1);
            assert_eq!(got.len(), 1);
            assert!(got[0].truncated, "a datagram of {length} bytes is marked truncated");
            assert!(got[0].payload().len() <= PAYLOAD_SIZE_MAX_BYTES);
            pool.give_back(got.into_iter().next().unwrap());
        }
        client.send_to(&[9; PAYLOAD_SIZE_MAX_BYTES], address).unwrap();
        let got = receive_all(&mut backend, &pool, 1);
        assert!(!got[0].truncated && got[0].payload().len() == PAYLOAD_SIZE_MAX_BYTES, "the longest that fits");
        assert_eq!(backend.receive_errors, 0);
    }
}
