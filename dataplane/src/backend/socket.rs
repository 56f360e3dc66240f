//! The `socket` backend: a kernel UDP socket driven through a raw io_uring.
//! `rx_slots` receives are kept posted, each into a packet buffer of its own;
//! a completed one is swapped for an empty buffer and posted again, so a
//! datagram is received without a copy, a syscall of its own or an
//! allocation. Replies are copied into `tx_slots` send buffers and submitted
//! as a batch. (glommio's `UdpSocket` allocates per operation, which the
//! counting-allocator test forbids on this path.)
#![allow(unsafe_code)]

use std::{
    collections::VecDeque,
    io, mem,
    net::{SocketAddrV4, UdpSocket},
    os::fd::{AsRawFd, BorrowedFd},
    time::Duration,
};

use io_uring::{IoUring, opcode, types};

use super::Backend;
use crate::packet::{PAYLOAD_SIZE_MAX_BYTES, Packet, Peer};

/// Slots of either kind at most (user data keeps the index in 31 bits).
pub const SOCKET_SLOTS_MAX: usize = 4096;
const TX_FLAG: u64 = 1 << 31;
/// The user data of the doorbell's eventfd read (no slot index reaches it).
const DOORBELL: u64 = 1 << 40;
#[expect(clippy::cast_possible_truncation, reason = "AF_INET is 2")]
const AF_INET: libc::sa_family_t = libc::AF_INET as libc::sa_family_t;
#[expect(clippy::cast_possible_truncation, reason = "16 bytes")]
const SOCKADDR_IN_BYTES: u32 = mem::size_of::<libc::sockaddr_in>() as u32;

struct RxSlot {
    msg: libc::msghdr,
    iov: libc::iovec,
    addr: libc::sockaddr_in,
    packet: Box<Packet>,
}

struct TxSlot {
    msg: libc::msghdr,
    iov: libc::iovec,
    addr: libc::sockaddr_in,
    buffer: Box<[u8; PAYLOAD_SIZE_MAX_BYTES]>,
}

/// io_uring receive and send on one UDP socket.
pub struct SocketBackend {
    socket: UdpSocket,
    ring: IoUring,
    rx: Box<[RxSlot]>,
    /// Receive slots whose datagram has arrived, oldest first.
    rx_ready: VecDeque<usize>,
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

// SAFETY: the raw pointers in the slots point only into the backend's own
// boxed slots and buffers, which move with it; nothing else shares them.
unsafe impl Send for SocketBackend {}

impl std::fmt::Debug for SocketBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketBackend").field("socket", &self.socket).field("rx_slots", &self.rx.len()).finish()
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

impl SocketBackend {
    /// Takes a bound socket and `rx_slots` packet buffers, and posts the receives.
    pub fn open(socket: UdpSocket, rx_packets: Vec<Box<Packet>>, tx_slots: usize) -> io::Result<Self> {
        let rx_slots = rx_packets.len();
        assert!((1..=SOCKET_SLOTS_MAX).contains(&rx_slots) && (1..=SOCKET_SLOTS_MAX).contains(&tx_slots));
        let entries = u32::try_from((rx_slots + tx_slots).next_power_of_two()).expect("at most 2 * SOCKET_SLOTS_MAX");
        // Not SINGLE_ISSUER: the ring is made here and driven from the tile's thread.
        let ring = IoUring::new(entries)?;
        let rx = rx_packets
            .into_iter()
            .map(|packet| RxSlot {
                msg: zeroed_msghdr(),
                iov: libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 },
                addr: sockaddr(SocketAddrV4::new([0, 0, 0, 0].into(), 0)),
                packet,
            })
            .collect();
        let tx = (0..tx_slots)
            .map(|_| TxSlot {
                msg: zeroed_msghdr(),
                iov: libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 },
                addr: sockaddr(SocketAddrV4::new([0, 0, 0, 0].into(), 0)),
                buffer: Box::new([0; PAYLOAD_SIZE_MAX_BYTES]),
            })
            .collect();
        let mut backend = Self {
            socket,
            ring,
            rx,
            rx_ready: VecDeque::with_capacity(rx_slots),
            tx,
            tx_free: (0..tx_slots).rev().collect(),
            unsubmitted: 0,
            doorbell_value: Box::new([0; 8]),
            doorbell_posted: false,
            receive_errors: 0,
            send_errors: 0,
        };
        for slot in 0..rx_slots {
            backend.post_receive(slot)?;
        }
        backend.submit()?;
        Ok(backend)
    }

    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.socket.local_addr()
    }

    fn post_receive(&mut self, index: usize) -> io::Result<()> {
        let fd = types::Fd(self.socket.as_raw_fd());
        let slot = &mut self.rx[index];
        slot.iov =
            libc::iovec { iov_base: slot.packet.buffer_mut().as_mut_ptr().cast(), iov_len: PAYLOAD_SIZE_MAX_BYTES };
        slot.msg = message_header(&mut slot.addr, &mut slot.iov);
        let entry = opcode::RecvMsg::new(fd, &raw mut slot.msg).build().user_data(index as u64);
        self.push(&entry)
    }

    fn push(&mut self, entry: &io_uring::squeue::Entry) -> io::Result<()> {
        // The ring has an entry for every slot, and each slot has at most one
        // operation in flight, so the queue cannot be full after a submit.
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

    /// Moves completions into slot states; failed receives are posted again.
    fn reap(&mut self) -> io::Result<()> {
        let mut repost = [0usize; 64];
        loop {
            let mut reposts = 0;
            for entry in self.ring.completion() {
                let user_data = entry.user_data();
                if user_data == DOORBELL {
                    // Drained the eventfd: posted again at the next wait.
                    self.doorbell_posted = false;
                    continue;
                }
                let index = usize::try_from(user_data & !TX_FLAG).expect("a slot index");
                if user_data & TX_FLAG != 0 {
                    if entry.result() < 0 {
                        self.send_errors += 1;
                    }
                    self.tx_free.push(index);
                } else if entry.result() < 0 {
                    self.receive_errors += 1;
                    repost[reposts] = index;
                    reposts += 1;
                } else {
                    let slot = &mut self.rx[index];
                    slot.packet.set_len(entry.result() as usize);
                    slot.packet.truncated = slot.msg.msg_flags & libc::MSG_TRUNC != 0;
                    let ip = slot.addr.sin_addr.s_addr.to_ne_bytes();
                    slot.packet.peer =
                        Peer { addr: SocketAddrV4::new(ip.into(), u16::from_be(slot.addr.sin_port)), mac: [0; 6] };
                    self.rx_ready.push_back(index);
                }
                if reposts == repost.len() {
                    break;
                }
            }
            for &index in &repost[..reposts] {
                self.post_receive(index)?;
            }
            if reposts < repost.len() {
                return Ok(());
            }
        }
    }
}

impl Backend for SocketBackend {
    fn name(&self) -> &'static str {
        "socket"
    }

    fn receive(&mut self, packets: &mut [Box<Packet>]) -> io::Result<usize> {
        self.reap()?;
        let mut received = 0;
        while received < packets.len() {
            let Some(index) = self.rx_ready.pop_front() else { break };
            mem::swap(&mut packets[received], &mut self.rx[index].packet);
            self.post_receive(index)?;
            received += 1;
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
