//! The DPDK backend (feature `dpdk`): one port of the system DPDK 22.11, one
//! receive and one transmit queue, polled by the net tile. Frames are parsed
//! and built by hand (`frame`): received UDP datagrams for our address and port
//! are copied into packet buffers, ARP requests for our address are answered,
//! everything else is dropped; replies are built straight into mbufs.
//!
//! The EAL is process-wide and starts once (`rte_eal_init`), from the thread
//! that opens the first backend. It pins that thread to its main lcore's CPU
//! set (`-l`/`--lcores` in `eal_args` choose which), and starts a worker thread
//! for every other lcore it is given, so a single `-l CORE` suits one net tile.
//! The poll-mode drivers are loaded at init from the EAL's plugin directory
//! (build_dpdk.rs); `--vdev=net_af_packet0,iface=IF`,
//! `--vdev=net_af_xdp0,iface=IF,start_queue=0,queue_count=1` or a PCI device
//! (`-a BUS:DEV.FN`) make the port.
//!
//! Nothing on the hot path allocates: the mbuf pool and the arrays of mbuf
//! pointers for a burst are made at `open`. The backend may move between
//! threads; a thread that is not an EAL lcore uses the pool without a cache.

#![allow(unsafe_code)]

use std::{
    ffi::{CStr, CString, c_char, c_int, c_uint},
    fmt, io, iter,
    net::Ipv4Addr,
    ptr::{self, NonNull},
    slice,
    sync::OnceLock,
};

use thiserror::Error;

use crate::{
    backend::{Backend, DpdkConfig},
    frame::{self, Local, Received},
    packet::{PAYLOAD_SIZE_MAX_BYTES, Packet},
};

#[allow(
    dead_code,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    missing_debug_implementations,
    unreachable_pub,
    unsafe_op_in_unsafe_fn,
    clippy::all,
    clippy::pedantic
)]
mod ffi {
    include!(concat!(env!("OUT_DIR"), "/dpdk_bindings.rs"));
}

/// The most mbufs one receive or send call handles (`burst_size` is bounded by it).
pub const BURST_SIZE_MAX: u16 = 512;
/// The data room of an mbuf by default (DPDK's RTE_MBUF_DEFAULT_DATAROOM): one
/// standard 1500-byte-MTU frame. Payloads up to PAYLOAD_SIZE_MAX_BYTES need
/// jumbo frames and `mbuf_data_room` of at least HEADERS_BYTES + 4096.
pub const MBUF_DATA_ROOM_DEFAULT: u16 = 2048;
/// The largest frame received across chained mbufs that is still parsed (a
/// 9000-byte-MTU jumbo frame); longer ones are dropped.
const CHAINED_FRAME_BYTES_MAX: usize = 9216;
/// The shortest Ethernet frame without its FCS (shorter ones are padded), and
/// so the least data room an mbuf may have.
const MBUF_DATA_ROOM_MIN: u16 = 60;
const ETHERNET_FRAME_BYTES_MIN: usize = MBUF_DATA_ROOM_MIN as usize;
/// Per-lcore mbuf cache of the pool, at most (DPDK allows up to RTE_MEMPOOL_CACHE_MAX_SIZE).
const MEMPOOL_CACHE_SIZE_MAX: u32 = 256;
/// The one receive and one transmit queue.
const QUEUE: u16 = 0;

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum DpdkError {
    #[error("dpdk: invalid [net.dpdk]: {0}")]
    Config(String),
    #[error("dpdk: EAL argument {0:?} contains a NUL byte")]
    EalArgument(String),
    #[error("dpdk: rte_eal_init failed: {message} (rte_errno {errno}); EAL arguments: {args}")]
    EalInit { errno: i32, message: String, args: String },
    #[error(
        "dpdk: the EAL is already initialised in this process with [{running}] and cannot start again with [{requested}]"
    )]
    EalAlreadyInitialized { running: String, requested: String },
    #[error("dpdk: found no Ethernet port (no --vdev or -a device in the EAL arguments, or its driver did not load)")]
    NoPorts,
    #[error("dpdk: port {port} does not exist ({available} ports are available)")]
    NoSuchPort { port: u16, available: u16 },
    #[error("dpdk: creating the pool of {mbufs} mbufs of {buffer_bytes} bytes for port {port} failed: {message}")]
    PoolCreate { port: u16, mbufs: u32, buffer_bytes: u16, message: String },
    #[error("dpdk: {step} on port {port} failed with code {code}: {message}")]
    Port { port: u16, step: &'static str, code: i32, message: String },
}

/// The EAL arguments it started with, or why it did not: it runs once per process.
static EAL: OnceLock<Result<Vec<String>, DpdkError>> = OnceLock::new();

/// Starts the EAL with `args`, or checks that it already runs with them.
fn init_eal(args: &[String]) -> Result<(), DpdkError> {
    if let Some(bad) = args.iter().find(|arg| arg.contains('\0')) {
        return Err(DpdkError::EalArgument(bad.clone()));
    }
    match EAL.get_or_init(|| run_eal_init(args).map(|()| args.to_vec())) {
        Ok(running) if running == args => Ok(()),
        Ok(running) => Err(DpdkError::EalAlreadyInitialized { running: running.join(" "), requested: args.join(" ") }),
        Err(error) => Err(error.clone()),
    }
}

fn run_eal_init(args: &[String]) -> Result<(), DpdkError> {
    // The EAL permutes argv and may keep pointers into it for the life of the
    // process: the strings and the array are leaked (once per process).
    let argv: &'static mut [*mut c_char] = Vec::leak(
        iter::once("tephra")
            .chain(args.iter().map(String::as_str))
            .map(|arg| CString::new(arg).expect("NUL bytes were refused").into_raw())
            .chain(iter::once(ptr::null_mut()))
            .collect(),
    );
    let argc = c_int::try_from(argv.len() - 1)
        .map_err(|_| DpdkError::Config(format!("{} EAL arguments are too many", args.len())))?;
    // SAFETY: argv holds argc valid NUL-terminated strings and a final null,
    // all leaked so they outlive the EAL; the OnceLock runs this only once.
    let parsed = unsafe { ffi::rte_eal_init(argc, argv.as_mut_ptr()) };
    if parsed < 0 {
        let errno = rte_errno();
        return Err(DpdkError::EalInit { errno, message: error_text(errno), args: args.join(" ") });
    }
    Ok(())
}

/// The calling thread's rte_errno.
fn rte_errno() -> i32 {
    // SAFETY: reads a thread-local integer; valid on any thread.
    unsafe { ffi::tephra_dpdk_errno() }
}

/// rte_strerror's text for an errno (DPDK's own or libc's).
fn error_text(errno: i32) -> String {
    // SAFETY: rte_strerror returns a NUL-terminated string (static, or in a
    // thread-local buffer) that is copied out before anything else runs here.
    unsafe { CStr::from_ptr(ffi::rte_strerror(errno)) }.to_string_lossy().into_owned()
}

/// Turns a DPDK return code (a negative errno on failure) into a port error.
fn check(port: u16, step: &'static str, code: c_int) -> Result<(), DpdkError> {
    if code < 0 {
        return Err(DpdkError::Port { port, step, code, message: error_text(-code) });
    }
    Ok(())
}

/// The port's counters and the backend's own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DpdkStats {
    /// Frames the port received and sent (all of them, ours or not).
    pub rx_frames: u64,
    pub tx_frames: u64,
    /// Frames the port dropped because the receive ring was full.
    pub rx_missed: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    /// Frames the port dropped for want of an mbuf.
    pub rx_no_mbuf: u64,
    /// Received frames that were neither our datagrams nor ARP requests for us.
    pub rx_not_ours: u64,
    pub arp_replies: u64,
    /// Replies dropped because their frame was longer than an mbuf's data room.
    pub tx_oversize: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    rx_not_ours: u64,
    arp_replies: u64,
    tx_oversize: u64,
}

/// One DPDK port, started; stopped and closed (with its pool freed) on drop.
pub struct DpdkBackend {
    port: u16,
    local: Local,
    pool: NonNull<ffi::rte_mempool>,
    burst: u16,
    /// The mbufs of one receive burst, and of one send burst (empty between calls).
    rx: Box<[*mut ffi::rte_mbuf]>,
    tx: Box<[*mut ffi::rte_mbuf]>,
    /// For each frame queued in `tx`, the index of its packet in the send call.
    tx_origin: Box<[usize]>,
    /// A frame received across chained mbufs, made contiguous to parse.
    chained: Box<[u8]>,
    configured: bool,
    started: bool,
    counters: Counters,
}

// SAFETY: the backend owns its port's queue 0 and the mbufs in its arrays
// (none between calls), and the pool's ring is multi-producer/multi-consumer;
// DPDK lets any one thread at a time use a queue and the pool, EAL lcore or not.
unsafe impl Send for DpdkBackend {}

impl fmt::Debug for DpdkBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpdkBackend")
            .field("port", &self.port)
            .field("local", &self.local)
            .field("burst", &self.burst)
            .field("started", &self.started)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl DpdkConfig {
    fn validate(&self) -> Result<(), DpdkError> {
        let invalid = |message: String| Err(DpdkError::Config(message));
        if self.burst_size == 0 || self.burst_size > BURST_SIZE_MAX {
            return invalid(format!("burst_size {} is not within 1..={BURST_SIZE_MAX}", self.burst_size));
        }
        if self.rx_queue_depth == 0 || self.tx_queue_depth == 0 {
            return invalid("rx_queue_depth and tx_queue_depth must be positive".into());
        }
        let needed = u32::from(self.rx_queue_depth) + u32::from(self.tx_queue_depth) + 2 * u32::from(self.burst_size);
        if self.mbufs < needed {
            return invalid(format!(
                "{} mbufs cannot fill both queues and two bursts: at least {needed} are needed",
                self.mbufs
            ));
        }
        if self.mbuf_data_room < MBUF_DATA_ROOM_MIN {
            return invalid(format!("mbuf_data_room {} is under {MBUF_DATA_ROOM_MIN} bytes", self.mbuf_data_room));
        }
        Ok(())
    }
}

impl DpdkBackend {
    /// Starts the EAL (the first time), then configures and starts
    /// `config.port_id` to receive UDP datagrams for `local_ip:port`.
    pub fn open(config: &DpdkConfig, local_ip: Ipv4Addr, port: u16) -> Result<Self, DpdkError> {
        config.validate()?;
        init_eal(&config.eal_args)?;
        let port_id = config.port_id;
        // SAFETY: the EAL is initialised.
        let available = unsafe { ffi::rte_eth_dev_count_avail() };
        if available == 0 {
            return Err(DpdkError::NoPorts);
        }
        // SAFETY: the EAL is initialised; any port number may be asked about.
        if unsafe { ffi::rte_eth_dev_is_valid_port(port_id) } == 0 {
            return Err(DpdkError::NoSuchPort { port: port_id, available });
        }
        // SAFETY: the port is valid. -1 (SOCKET_ID_ANY) when its NUMA node is unknown.
        let socket = unsafe { ffi::rte_eth_dev_socket_id(port_id) };
        let pool = create_pool(port_id, config, socket)?;
        let burst = usize::from(config.burst_size);
        let mut backend = Self {
            port: port_id,
            local: Local { mac: [0; 6], ip: local_ip, port },
            pool,
            burst: config.burst_size,
            rx: vec![ptr::null_mut(); burst].into_boxed_slice(),
            tx: vec![ptr::null_mut(); burst].into_boxed_slice(),
            tx_origin: vec![0; burst].into_boxed_slice(),
            chained: vec![0; CHAINED_FRAME_BYTES_MAX].into_boxed_slice(),
            configured: false,
            started: false,
            counters: Counters::default(),
        };
        // From here on, a failure drops `backend`, which closes the port and frees the pool.
        backend.start(config, socket)?;
        Ok(backend)
    }

    fn start(&mut self, config: &DpdkConfig, socket: c_int) -> Result<(), DpdkError> {
        let port = self.port;
        let conf = ffi::rte_eth_conf::default(); // no RSS, no offloads, the device's MTU
        self.configured = true;
        // SAFETY: the port is valid and stopped; `conf` outlives the call.
        check(port, "rte_eth_dev_configure", unsafe { ffi::rte_eth_dev_configure(port, 1, 1, &conf) })?;
        let (mut rx_depth, mut tx_depth) = (config.rx_queue_depth, config.tx_queue_depth);
        // SAFETY: the port is configured; both pointers are to live u16s.
        check(port, "adjusting the queue depths", unsafe {
            ffi::rte_eth_dev_adjust_nb_rx_tx_desc(port, &mut rx_depth, &mut tx_depth)
        })?;
        let socket = socket.cast_unsigned(); // SOCKET_ID_ANY stays -1 to DPDK
        // SAFETY: the port is configured with one rx queue; a null rxconf means
        // the driver's defaults; the pool lives until the port is closed (Drop).
        check(port, "rte_eth_rx_queue_setup", unsafe {
            ffi::rte_eth_rx_queue_setup(port, QUEUE, rx_depth, socket, ptr::null(), self.pool.as_ptr())
        })?;
        // SAFETY: the port is configured with one tx queue; null txconf: the driver's defaults.
        check(port, "rte_eth_tx_queue_setup", unsafe {
            ffi::rte_eth_tx_queue_setup(port, QUEUE, tx_depth, socket, ptr::null())
        })?;
        if config.promiscuous {
            // SAFETY: the port is configured.
            check(port, "rte_eth_promiscuous_enable", unsafe { ffi::rte_eth_promiscuous_enable(port) })?;
        }
        // SAFETY: the port is configured and both queues are set up.
        check(port, "rte_eth_dev_start", unsafe { ffi::rte_eth_dev_start(port) })?;
        self.started = true;
        let mut mac = ffi::rte_ether_addr::default();
        // SAFETY: the port is valid; `mac` is a live rte_ether_addr.
        check(port, "rte_eth_macaddr_get", unsafe { ffi::rte_eth_macaddr_get(port, &mut mac) })?;
        self.local.mac = mac.addr_bytes;
        Ok(())
    }

    /// Our end of the link: the port's MAC address, our IP address and UDP port.
    pub fn local(&self) -> Local {
        self.local
    }

    pub fn port_id(&self) -> u16 {
        self.port
    }

    /// The port's counters (rte_eth_stats_get) and the backend's own.
    pub fn stats(&self) -> Result<DpdkStats, DpdkError> {
        let mut stats = ffi::rte_eth_stats::default();
        // SAFETY: the port is valid; `stats` is a live rte_eth_stats.
        check(self.port, "rte_eth_stats_get", unsafe { ffi::rte_eth_stats_get(self.port, &mut stats) })?;
        Ok(DpdkStats {
            rx_frames: stats.ipackets,
            tx_frames: stats.opackets,
            rx_missed: stats.imissed,
            rx_errors: stats.ierrors,
            tx_errors: stats.oerrors,
            rx_no_mbuf: stats.rx_nombuf,
            rx_not_ours: self.counters.rx_not_ours,
            arp_replies: self.counters.arp_replies,
            tx_oversize: self.counters.tx_oversize,
        })
    }

    /// Fills `tx[..count]` with fresh mbufs, as many as the pool has; returns how many.
    fn allocate_tx(&mut self, count: usize) -> usize {
        let pool = self.pool.as_ptr();
        let wanted = c_uint::try_from(count).expect("a burst is at most BURST_SIZE_MAX");
        // SAFETY: `tx` has room for `count` <= burst pointers; the pool is live.
        if unsafe { ffi::tephra_dpdk_pktmbuf_alloc_bulk(pool, self.tx.as_mut_ptr(), wanted) } == 0 {
            return count;
        }
        // The pool is short of a whole burst (all or none): take what it has.
        for (allocated, slot) in self.tx[..count].iter_mut().enumerate() {
            // SAFETY: the pool is live; a null result means it is empty.
            let mbuf = unsafe { ffi::tephra_dpdk_pktmbuf_alloc(pool) };
            if mbuf.is_null() {
                return allocated;
            }
            *slot = mbuf;
        }
        count
    }
}

/// Creates the port's mbuf pool, named after the port.
fn create_pool(port: u16, config: &DpdkConfig, socket: c_int) -> Result<NonNull<ffi::rte_mempool>, DpdkError> {
    // SAFETY: returns a build constant.
    let headroom = unsafe { ffi::tephra_dpdk_pktmbuf_headroom() };
    let buffer_bytes = config.mbuf_data_room.checked_add(headroom).ok_or_else(|| {
        DpdkError::Config(format!("mbuf_data_room {} with {headroom} of headroom overflows u16", config.mbuf_data_room))
    })?;
    let error = |message: String| DpdkError::PoolCreate { port, mbufs: config.mbufs, buffer_bytes, message };
    let name = CString::new(format!("tephra_mbufs_{port}")).expect("no NUL in a formatted number");
    // DPDK wants cache_size * 1.5 <= n.
    let cache = (config.mbufs / 8).min(MEMPOOL_CACHE_SIZE_MAX);
    // SAFETY: the EAL is initialised; `name` outlives the call (DPDK copies it).
    let pool = unsafe { ffi::rte_pktmbuf_pool_create(name.as_ptr(), config.mbufs, cache, 0, buffer_bytes, socket) };
    NonNull::new(pool).ok_or_else(|| {
        let errno = rte_errno();
        error(format!("{} (rte_errno {errno})", error_text(errno)))
    })
}

/// The frame in a received mbuf: its first segment, or the chain copied into `chained`.
///
/// # Safety
/// `mbuf` is a live received mbuf, not freed while the returned slice is used.
unsafe fn received_frame(mbuf: *mut ffi::rte_mbuf, chained: &mut [u8]) -> &[u8] {
    // SAFETY: `mbuf` is live (the caller's contract).
    unsafe {
        if ffi::tephra_dpdk_mbuf_nb_segs(mbuf) == 1 {
            return slice::from_raw_parts(
                ffi::tephra_dpdk_mbuf_data(mbuf),
                usize::from(ffi::tephra_dpdk_mbuf_data_len(mbuf)),
            );
        }
        let len = usize::try_from(ffi::tephra_dpdk_mbuf_pkt_len(mbuf)).unwrap_or(usize::MAX).min(chained.len());
        let len_u32 = u32::try_from(len).expect("bounded by CHAINED_FRAME_BYTES_MAX");
        let bytes = ffi::tephra_dpdk_pktmbuf_read(mbuf, 0, len_u32, chained.as_mut_ptr().cast());
        if bytes.is_null() { &[] } else { slice::from_raw_parts(bytes.cast::<u8>(), len) }
    }
}

/// Fills a fresh mbuf with the frame `build` writes into its room, padded to
/// the Ethernet minimum; false (and the mbuf untouched) when it does not fit.
///
/// # Safety
/// `mbuf` is a live, freshly allocated single-segment mbuf owned by the caller.
unsafe fn fill_mbuf(mbuf: *mut ffi::rte_mbuf, build: impl FnOnce(&mut [u8]) -> Option<usize>) -> bool {
    // SAFETY: a fresh mbuf's data starts after the headroom with `tailroom`
    // writable bytes that nothing else references.
    let room = unsafe {
        slice::from_raw_parts_mut(ffi::tephra_dpdk_mbuf_data(mbuf), usize::from(ffi::tephra_dpdk_mbuf_tailroom(mbuf)))
    };
    let Some(mut len) = build(room) else { return false };
    if len < ETHERNET_FRAME_BYTES_MIN && room.len() >= ETHERNET_FRAME_BYTES_MIN {
        room[len..ETHERNET_FRAME_BYTES_MIN].fill(0);
        len = ETHERNET_FRAME_BYTES_MIN;
    }
    let Ok(len) = u16::try_from(len) else { return false };
    // SAFETY: `mbuf` is live and single-segment; `len` fits its room.
    unsafe { ffi::tephra_dpdk_mbuf_set_len(mbuf, len) == 0 }
}

/// Sends the ARP reply to a request for our address (best effort: dropped
/// when the pool or the transmit ring is full).
fn reply_arp(
    port: u16,
    pool: NonNull<ffi::rte_mempool>,
    local: &Local,
    sender_mac: [u8; 6],
    sender_ip: Ipv4Addr,
) -> bool {
    // SAFETY: the pool is live; null when it is empty.
    let mut mbuf = unsafe { ffi::tephra_dpdk_pktmbuf_alloc(pool.as_ptr()) };
    if mbuf.is_null() {
        return false;
    }
    // SAFETY: `mbuf` is fresh and ours.
    let built = unsafe { fill_mbuf(mbuf, |room| frame::build_arp_reply(room, local, sender_mac, sender_ip)) };
    // SAFETY: the port is started; `mbuf` is one valid mbuf, which tx takes or leaves to us.
    let sent = built && unsafe { ffi::tephra_dpdk_tx_burst(port, QUEUE, &mut mbuf, 1) } == 1;
    if !sent {
        // SAFETY: tx did not take it, so it is still ours.
        unsafe { ffi::tephra_dpdk_pktmbuf_free(mbuf) };
    }
    sent
}

impl Backend for DpdkBackend {
    fn name(&self) -> &'static str {
        "dpdk"
    }

    fn receive(&mut self, packets: &mut [Box<Packet>]) -> io::Result<usize> {
        let want = u16::try_from(packets.len()).unwrap_or(u16::MAX).min(self.burst);
        if want == 0 {
            return Ok(0);
        }
        // SAFETY: the port is started; `rx` has room for `want` <= burst pointers.
        let received = unsafe { ffi::tephra_dpdk_rx_burst(self.port, QUEUE, self.rx.as_mut_ptr(), want) };
        let mut filled = 0;
        for &mbuf in &self.rx[..usize::from(received)] {
            // SAFETY: rx burst handed us `mbuf`; it is freed only after the loop.
            let frame = unsafe { received_frame(mbuf, &mut self.chained) };
            match frame::parse(frame, &self.local) {
                Received::Datagram { peer, payload } => {
                    // `filled` < `received` <= packets.len().
                    let packet = &mut packets[filled];
                    let bytes = &frame[payload];
                    let len = bytes.len().min(PAYLOAD_SIZE_MAX_BYTES);
                    packet.buffer_mut()[..len].copy_from_slice(&bytes[..len]);
                    packet.set_len(len);
                    packet.truncated = len < bytes.len();
                    packet.peer = peer;
                    filled += 1;
                }
                Received::ArpRequest { sender_mac, sender_ip } => {
                    if reply_arp(self.port, self.pool, &self.local, sender_mac, sender_ip) {
                        self.counters.arp_replies += 1;
                    }
                }
                Received::Other => self.counters.rx_not_ours += 1,
            }
        }
        // SAFETY: the first `received` entries are the mbufs rx burst handed us, no longer used.
        unsafe { ffi::tephra_dpdk_pktmbuf_free_bulk(self.rx.as_mut_ptr(), c_uint::from(received)) };
        Ok(filled)
    }

    fn send(&mut self, packets: &[Box<Packet>]) -> io::Result<usize> {
        let count = packets.len().min(usize::from(self.burst));
        if count == 0 {
            return Ok(0);
        }
        let allocated = self.allocate_tx(count);
        let mut ready = 0;
        for (index, packet) in packets[..allocated].iter().enumerate() {
            let mbuf = self.tx[ready];
            // SAFETY: `mbuf` is fresh from the pool and ours; one left over by a
            // packet too long for it is still untouched.
            if unsafe { fill_mbuf(mbuf, |room| frame::build_udp(room, &self.local, &packet.peer, packet.payload())) } {
                self.tx_origin[ready] = index;
                ready += 1;
            } else {
                self.counters.tx_oversize += 1; // taken (dropped), or the caller would retry it forever
            }
        }
        let queued = u16::try_from(ready).expect("a burst is at most BURST_SIZE_MAX");
        // SAFETY: the port is started; tx[..ready] are filled mbufs, which tx burst takes in order.
        let sent = usize::from(unsafe { ffi::tephra_dpdk_tx_burst(self.port, QUEUE, self.tx.as_mut_ptr(), queued) });
        let unsent = c_uint::try_from(allocated - sent).expect("a burst is at most BURST_SIZE_MAX");
        // SAFETY: tx[sent..allocated] are ours still: refused by tx burst, or never filled.
        unsafe { ffi::tephra_dpdk_pktmbuf_free_bulk(self.tx[sent..].as_mut_ptr(), unsent) };
        // Everything before the first refused frame was sent or dropped as oversize.
        Ok(if sent == ready { allocated } else { self.tx_origin[sent] })
    }

    fn flush(&mut self) -> io::Result<()> {
        // Transmitted mbufs go back to the pool as the driver reclaims them;
        // ask it to now (drivers without the operation return -ENOTSUP: fine).
        // SAFETY: the port is started; 0 means as many as possible.
        let _ = unsafe { ffi::rte_eth_tx_done_cleanup(self.port, QUEUE, 0) };
        Ok(())
    }
}

impl Drop for DpdkBackend {
    fn drop(&mut self) {
        if self.started {
            // SAFETY: the port was started by this backend and nothing else polls it.
            let _ = unsafe { ffi::rte_eth_dev_stop(self.port) };
        }
        if self.configured {
            // SAFETY: the port is stopped; closing releases its queues and the mbufs in them.
            // A virtual device (--vdev) is removed by it: a port is opened once per process.
            let _ = unsafe { ffi::rte_eth_dev_close(self.port) };
        }
        // SAFETY: the port that used the pool is closed and the arrays hold no mbuf.
        unsafe { ffi::rte_mempool_free(self.pool.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> DpdkConfig {
        DpdkConfig {
            eal_args: vec!["--no-pci".into()],
            port_id: 0,
            rx_queue_depth: 1024,
            tx_queue_depth: 1024,
            mbufs: 8191,
            burst_size: 32,
            mbuf_data_room: MBUF_DATA_ROOM_DEFAULT,
            promiscuous: false,
        }
    }

    #[test]
    fn the_default_config_is_valid() {
        assert!(base().validate().is_ok());
    }

    #[test]
    fn bad_configs_are_refused_before_the_eal_starts() {
        let base = base();
        let too_big = DpdkConfig { burst_size: BURST_SIZE_MAX + 1, ..base.clone() };
        assert!(matches!(too_big.validate(), Err(DpdkError::Config(_))));
        let few = DpdkConfig { mbufs: 100, ..base.clone() };
        assert!(matches!(few.validate(), Err(DpdkError::Config(_))));
        let nul = DpdkConfig { eal_args: vec!["a\0b".into()], ..base };
        assert!(matches!(DpdkBackend::open(&nul, Ipv4Addr::LOCALHOST, 9000), Err(DpdkError::EalArgument(_))));
    }
}
