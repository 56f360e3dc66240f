//! The `af_xdp` backend: an AF_XDP socket (xsk-rs over libxdp) on one queue
//! of a NIC, fed by tephra's own XDP program (bpf/tephra_xdp.c), which
//! redirects only IPv4 UDP for tephra's port and passes everything else (ARP,
//! ICMP, SSH) to the kernel. Frames are parsed and built by hand
//! (`crate::frame`). The UMEM is split in two fixed halves: receive frames
//! circulate between the fill and receive rings, transmit frames between a
//! free list and the transmit and completion rings; nothing is allocated
//! after `open`.
#![allow(unsafe_code)]

use std::{
    ffi::{CString, c_void},
    io::{self, Write},
    net::Ipv4Addr,
    num::NonZeroU32,
    os::fd::{AsRawFd, BorrowedFd},
    time::Duration,
};

use serde::Deserialize;
use xsk_rs::{
    CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem,
    config::{BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig},
};

use super::{Backend, SourceLimit};
use crate::{
    frame::{self, Local, Received},
    packet::{FRAME_SIZE_MAX_BYTES, PAYLOAD_SIZE_MAX_BYTES, Packet},
};

/// The XDP program, compiled by build.rs.
static XDP_PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/tephra_xdp.o"));
/// Frames received or sent per ring operation at most.
pub const AF_XDP_BURST_MAX: usize = 256;
/// One UMEM frame holds a whole Ethernet frame of the largest payload
/// (the kernel allows 2 KiB up to a page).
#[expect(clippy::cast_possible_truncation, reason = "4096")]
const FRAME_SIZE_BYTES: u32 = FRAME_SIZE_MAX_BYTES as u32;

/// How the XDP program is attached.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum XdpMode {
    /// Generic XDP: works on any interface (veth included), after the kernel's skb.
    Skb,
    /// In the driver, before any skb: a NIC whose driver supports XDP.
    Native,
}

/// `[net.af_xdp]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AfXdpConfig {
    pub interface: String,
    pub queue: u32,
    pub mode: XdpMode,
    /// UMEM frames: half receive, half transmit. A power of two.
    pub frames: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum AfXdpError {
    #[error("af_xdp: interface {0:?} not found")]
    NoInterface(String),
    #[error("af_xdp: reading the MAC address of {interface}: {error}")]
    Mac { interface: String, error: io::Error },
    #[error("af_xdp: [net.af_xdp] frames must be a power of two from 64 to 65536, not {0}")]
    Frames(u32),
    /// libbpf or the kernel refused `step` (the errno it returned).
    #[error("af_xdp: {step}: {error}")]
    Setup { step: &'static str, error: io::Error },
    /// xsk-rs refused to build a ring, the UMEM or the socket at `step`.
    #[error("af_xdp: {step}: {error}")]
    Xsk { step: &'static str, error: Box<dyn std::error::Error + Send + Sync> },
    #[error("af_xdp: finding tephra_xdp in the object: missing")]
    NoProgram,
    #[error("af_xdp: binding the AF_XDP socket: no fill ring")]
    NoFillRing,
    /// The fill ring took only `filled` of the `frames` receive frames.
    #[error("af_xdp: filling the fill ring: {filled} of {frames} frames")]
    FillRingShort { filled: usize, frames: usize },
}

fn setup(step: &'static str) -> impl FnOnce(io::Error) -> AfXdpError {
    move |error| AfXdpError::Setup { step, error }
}

fn xsk<E: std::error::Error + Send + Sync + 'static>(step: &'static str) -> impl FnOnce(E) -> AfXdpError {
    move |error| AfXdpError::Xsk { step, error: Box::new(error) }
}

/// tephra's XDP program attached to an interface; detached on drop.
#[derive(Debug)]
struct XdpProgram {
    object: *mut libxdp_sys::bpf_object,
    ifindex: i32,
    attach_flags: u32,
    sockets_map_fd: i32,
    limited_map_fd: i32,
    /// One slot per possible CPU, for reading the per-CPU drop count.
    limited_per_cpu: Vec<u64>,
}

impl XdpProgram {
    fn attach(ifindex: i32, port: u16, mode: XdpMode, limit: Option<SourceLimit>) -> Result<Self, AfXdpError> {
        let attach_flags = match mode {
            XdpMode::Skb => 1 << 1,    // XDP_FLAGS_SKB_MODE
            XdpMode::Native => 1 << 2, // XDP_FLAGS_DRV_MODE
        };
        // SAFETY: the object bytes are a static ELF; libbpf copies what it keeps.
        let object = unsafe {
            libxdp_sys::bpf_object__open_mem(XDP_PROGRAM.as_ptr().cast(), XDP_PROGRAM.len(), std::ptr::null())
        };
        if object.is_null() {
            return Err(AfXdpError::Setup { step: "opening the XDP program", error: io::Error::last_os_error() });
        }
        // From here the program is closed (and detached) on every error path by Drop.
        let mut program = Self {
            object,
            ifindex,
            attach_flags,
            sockets_map_fd: -1,
            limited_map_fd: -1,
            limited_per_cpu: vec![0; possible_cpus()],
        };
        // SAFETY: `object` is a valid open object for all the calls below.
        unsafe {
            check(libxdp_sys::bpf_object__load(object)).map_err(setup("loading the XDP program (BPF verifier)"))?;
            let entry = libxdp_sys::bpf_object__find_program_by_name(object, c"tephra_xdp".as_ptr());
            if entry.is_null() {
                return Err(AfXdpError::NoProgram);
            }
            let port_map = libxdp_sys::bpf_object__find_map_fd_by_name(object, c"tephra_port".as_ptr());
            program.sockets_map_fd = libxdp_sys::bpf_object__find_map_fd_by_name(object, c"tephra_xsks".as_ptr());
            let (key, value) = (0u32, u32::from(port));
            check(libxdp_sys::bpf_map_update_elem(port_map, (&raw const key).cast(), (&raw const value).cast(), 0))
                .map_err(setup("setting the port in the XDP program"))?;
            // [ns_per_datagram, burst_ns], as the program's struct source_limit.
            let limit: [u64; 2] = limit.filter(|l| l.datagrams_per_s > 0).map_or([0, 0], |l| {
                let ns_per_datagram = 1_000_000_000 / u64::from(l.datagrams_per_s);
                [ns_per_datagram, ns_per_datagram * u64::from(l.burst_datagrams.max(1))]
            });
            let limit_map = libxdp_sys::bpf_object__find_map_fd_by_name(object, c"tephra_limit".as_ptr());
            check(libxdp_sys::bpf_map_update_elem(limit_map, (&raw const key).cast(), (&raw const limit).cast(), 0))
                .map_err(setup("setting the source limit in the XDP program"))?;
            program.limited_map_fd = libxdp_sys::bpf_object__find_map_fd_by_name(object, c"tephra_limited".as_ptr());
            // Replaces whatever program a crashed run left attached.
            check(libxdp_sys::bpf_xdp_attach(
                ifindex,
                libxdp_sys::bpf_program__fd(entry),
                attach_flags,
                std::ptr::null(),
            ))
            .map_err(setup("attaching the XDP program"))?;
        }
        Ok(program)
    }

    /// The program's count of datagrams dropped for their source's rate, summed over CPUs.
    fn limited(&mut self) -> u64 {
        let key = 0u32;
        // SAFETY: a per-CPU array of u64 takes one u64 per possible CPU, as allocated.
        let result = unsafe {
            libxdp_sys::bpf_map_lookup_elem(
                self.limited_map_fd,
                (&raw const key).cast(),
                self.limited_per_cpu.as_mut_ptr().cast(),
            )
        };
        if result < 0 { 0 } else { self.limited_per_cpu.iter().sum() }
    }

    fn register(&self, queue: u32, socket_fd: i32) -> Result<(), AfXdpError> {
        // SAFETY: the map fd belongs to our loaded object; key and value are u32s.
        let result = unsafe {
            libxdp_sys::bpf_map_update_elem(
                self.sockets_map_fd,
                (&raw const queue).cast::<c_void>(),
                (&raw const socket_fd).cast(),
                0,
            )
        };
        check(result).map_err(setup("registering the AF_XDP socket in the XDP program"))
    }
}

impl Drop for XdpProgram {
    fn drop(&mut self) {
        // SAFETY: detaches only what this object attached (a no-op if it never
        // did), then closes the object once.
        unsafe {
            libxdp_sys::bpf_xdp_detach(self.ifindex, self.attach_flags, std::ptr::null());
            libxdp_sys::bpf_object__close(self.object);
        }
    }
}

/// CPUs the kernel may bring up (/sys/devices/system/cpu/possible, "0-63"):
/// what a per-CPU map's value holds one slot for.
fn possible_cpus() -> usize {
    let possible = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    let highest = possible.trim().split([',', '-']).filter_map(|n| n.parse::<usize>().ok()).max();
    highest.map_or(1, |n| n + 1)
}

/// A libbpf return value: a negative errno is an error.
fn check(result: i32) -> io::Result<()> {
    if result < 0 { Err(io::Error::from_raw_os_error(-result)) } else { Ok(()) }
}

/// AF_XDP receive and send on one NIC queue.
pub struct AfXdpBackend {
    // Field order is drop order: the socket before the program that feeds it.
    rx: RxQueue,
    tx: TxQueue,
    fill: FillQueue,
    completion: CompQueue,
    umem: Umem,
    program: XdpProgram,
    local: Local,
    /// Scratch for ring operations, sized AF_XDP_BURST_MAX.
    descs: Vec<FrameDesc>,
    tx_free: Vec<FrameDesc>,
    /// Transmit frames in all: when `tx_free` holds them all, nothing waits
    /// to be sent or completed.
    tx_frames: usize,
    tx_batch: Vec<FrameDesc>,
    frame: Box<[u8; FRAME_SIZE_BYTES as usize]>,
    pub frames_not_ours: u64,
}

// SAFETY: the queues and UMEM are used only by the thread that owns the
// backend; it moves between threads only before it is polled.
unsafe impl Send for AfXdpBackend {}

impl std::fmt::Debug for AfXdpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfXdpBackend").field("local", &self.local).finish()
    }
}

/// The MAC address of an interface, asked of the kernel (SIOCGIFHWADDR):
/// sysfs would show the namespace it was mounted in, not the caller's.
pub fn interface_mac(interface: &str) -> io::Result<[u8; 6]> {
    let name = interface.as_bytes();
    // SAFETY: ifreq is plain old data; all-zero is a valid request.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= request.ifr_name.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("interface name {interface:?} too long")));
    }
    for (slot, byte) in request.ifr_name.iter_mut().zip(name) {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: a datagram socket only to ask about the interface; closed below.
    let socket = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    if socket < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFHWADDR fills the ifreq it is given.
    let result = unsafe { libc::ioctl(socket, libc::SIOCGIFHWADDR, &raw mut request) };
    let error = io::Error::last_os_error();
    // SAFETY: our own socket, closed once.
    unsafe { libc::close(socket) };
    if result < 0 {
        return Err(error);
    }
    // SAFETY: SIOCGIFHWADDR filled the hardware-address member.
    let data = unsafe { request.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (byte, value) in mac.iter_mut().zip(data) {
        *byte = value as u8;
    }
    Ok(mac)
}

impl AfXdpBackend {
    /// Attaches the XDP program to `config.interface` and binds an AF_XDP
    /// socket (copy mode) to its queue, receiving datagrams for `ip:port`.
    /// `source_limit` is applied in the XDP program, before the socket.
    pub fn open(
        config: &AfXdpConfig,
        ip: Ipv4Addr,
        port: u16,
        source_limit: Option<SourceLimit>,
    ) -> Result<Self, AfXdpError> {
        if !config.frames.is_power_of_two() || !(64..=65536).contains(&config.frames) {
            return Err(AfXdpError::Frames(config.frames));
        }
        let name =
            CString::new(config.interface.clone()).map_err(|_| AfXdpError::NoInterface(config.interface.clone()))?;
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(AfXdpError::NoInterface(config.interface.clone()));
        }
        let mac = interface_mac(&config.interface)
            .map_err(|error| AfXdpError::Mac { interface: config.interface.clone(), error })?;
        let program = XdpProgram::attach(ifindex as i32, port, config.mode, source_limit)?;
        let half = config.frames / 2;
        let queue_size = QueueSize::new(half).map_err(xsk("ring size"))?;
        let umem_config = UmemConfig::builder()
            .frame_size(FrameSize::new(FRAME_SIZE_BYTES).map_err(xsk("frame size"))?)
            .fill_queue_size(queue_size)
            .comp_queue_size(queue_size)
            .build()
            .map_err(xsk("UMEM config"))?;
        let (umem, mut frames) = Umem::new(umem_config, NonZeroU32::new(config.frames).expect("checked"), false)
            .map_err(xsk("creating the UMEM"))?;
        let socket_config = SocketConfig::builder()
            .rx_queue_size(queue_size)
            .tx_queue_size(queue_size)
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(BindFlags::XDP_COPY | BindFlags::XDP_USE_NEED_WAKEUP)
            .build();
        // SAFETY: the UMEM outlives the socket (both owned by the backend,
        // dropped socket first) and its frames are used by this socket only.
        let (tx, rx, rings) = unsafe { Socket::new(socket_config, &umem, &Interface::new(name), config.queue) }
            .map_err(xsk("binding the AF_XDP socket"))?;
        let (mut fill, completion) = rings.ok_or(AfXdpError::NoFillRing)?;
        program.register(config.queue, rx.fd().as_raw_fd())?;
        let tx_free = frames.split_off(half as usize);
        // SAFETY: the receive frames belong to this UMEM and are in no ring yet.
        let filled = unsafe { fill.produce(&frames) };
        if filled != frames.len() {
            return Err(AfXdpError::FillRingShort { filled, frames: frames.len() });
        }
        let scratch = || Vec::with_capacity(AF_XDP_BURST_MAX);
        Ok(Self {
            rx,
            tx,
            fill,
            completion,
            umem,
            program,
            local: Local { mac, ip, port },
            descs: frames.into_iter().take(AF_XDP_BURST_MAX).collect(),
            tx_frames: tx_free.len(),
            tx_free,
            tx_batch: scratch(),
            frame: Box::new([0; FRAME_SIZE_BYTES as usize]),
            frames_not_ours: 0,
        })
    }

    /// Whether transmit frames wait to be sent or completed.
    fn tx_in_flight(&self) -> bool {
        self.tx_free.len() < self.tx_frames
    }

    /// Reclaims transmit frames the kernel has sent.
    fn complete(&mut self) {
        let room = self.descs.len();
        // SAFETY: completed descriptors are frames of this UMEM.
        let done = unsafe { self.completion.consume(&mut self.descs[..room]) };
        self.tx_free.extend_from_slice(&self.descs[..done]);
    }
}

impl Backend for AfXdpBackend {
    fn name(&self) -> &'static str {
        "af_xdp"
    }

    fn dropped_by_source_limit(&mut self) -> u64 {
        self.program.limited()
    }

    fn receive(&mut self, packets: &mut [Box<Packet>]) -> io::Result<usize> {
        let burst = packets.len().min(self.descs.len());
        // SAFETY: the descriptors come back from this socket's receive ring.
        let arrived = unsafe { self.rx.consume(&mut self.descs[..burst]) };
        if arrived == 0 {
            // Copy mode: the kernel fills only once asked to.
            if self.fill.needs_wakeup() {
                self.fill.wakeup(self.rx.fd_mut(), 0)?;
            }
            return Ok(0);
        }
        let mut received = 0;
        for desc in &self.descs[..arrived] {
            // SAFETY: the frame was handed to us by the receive ring and is
            // not in the fill ring until it is produced below.
            let data = unsafe { self.umem.data(desc) };
            match frame::parse(data.contents(), &self.local) {
                Received::Datagram { peer, payload } if payload.len() <= PAYLOAD_SIZE_MAX_BYTES => {
                    let packet = &mut packets[received];
                    packet.fill(&data.contents()[payload]);
                    packet.peer = peer;
                    received += 1;
                }
                _ => self.frames_not_ours += 1,
            }
        }
        // SAFETY: the frames are done with and go back to the kernel.
        unsafe { self.fill.produce_and_wakeup(&self.descs[..arrived], self.rx.fd_mut(), 0) }?;
        Ok(received)
    }

    fn send(&mut self, packets: &[Box<Packet>]) -> io::Result<usize> {
        self.complete();
        self.tx_batch.clear();
        for packet in packets.iter().take(AF_XDP_BURST_MAX) {
            let Some(mut desc) = self.tx_free.pop() else { break };
            let length = frame::build_udp(&mut self.frame[..], &self.local, &packet.peer, packet.payload())
                .expect("a payload fits a frame");
            // SAFETY: the frame is free: not in any ring.
            let mut data = unsafe { self.umem.data_mut(&mut desc) };
            let mut cursor = data.cursor();
            cursor.set_pos(0);
            cursor.write_all(&self.frame[..length])?;
            self.tx_batch.push(desc);
        }
        // SAFETY: the frames were written above and belong to this UMEM.
        let queued = unsafe { self.tx.produce_and_wakeup(&self.tx_batch) }?;
        // What the ring did not take goes back to the free list.
        self.tx_free.extend(self.tx_batch.drain(queued..));
        Ok(queued)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.complete();
        // A kick only for frames still in flight: in copy mode the ring always
        // asks for one, and an empty kick is a syscall for nothing.
        if self.tx_in_flight() && self.tx.needs_wakeup() {
            self.tx.wakeup()?;
            self.complete();
        }
        Ok(())
    }

    /// poll(2) on the socket and the doorbell: the kernel marks the socket
    /// readable when its receive ring holds a frame (also one that arrived
    /// before the call), so nothing is missed between `receive` and here.
    fn wait(&mut self, timeout: Duration, doorbell: BorrowedFd<'_>) -> io::Result<bool> {
        // A copy-mode kick sends a bounded batch: replies left in the ring
        // would wait out the timeout, so the tile sleeps its short idle sleep
        // and kicks again instead (and does not spin on a busy queue).
        self.complete();
        if self.tx_in_flight() {
            return Ok(false);
        }
        // SAFETY: the socket's descriptor lives as long as `self.rx`, past this call.
        let socket = unsafe { BorrowedFd::borrow_raw(self.rx.fd().as_raw_fd()) };
        let mut fds = [
            rustix::event::PollFd::new(&socket, rustix::event::PollFlags::IN),
            rustix::event::PollFd::new(&doorbell, rustix::event::PollFlags::IN),
        ];
        let timeout = rustix::event::Timespec::try_from(timeout).map_err(|_| io::ErrorKind::InvalidInput)?;
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(error) => return Err(error.into()),
        }
        if fds[1].revents().contains(rustix::event::PollFlags::IN) {
            // Drains the eventfd (non-blocking), so the next wait blocks again.
            let mut value = [0u8; 8];
            match rustix::io::read(doorbell, &mut value) {
                Ok(_) | Err(rustix::io::Errno::AGAIN) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(true)
    }
}
