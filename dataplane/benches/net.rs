//! Receive-and-reply datagram rate of each backend on one core, against a
//! plain kernel socket answering with recvmmsg/sendmmsg, all in the same run
//! across the same veth pair between two network namespaces (root).
//!
//!     cargo bench -p tephra-dataplane --bench net [--features dpdk [-- --dpdk-af-xdp]]
//!
//! The net tile and an echo tile (standing in for verify) share the server
//! core, busy-polling; the load generator, on the other core, keeps WINDOW
//! datagrams outstanding (closed loop: the maximum).
//!
//! Then the net tile's share of a core at CPU_RATE datagrams a second of one
//! transaction each, open loop, as the node runs it by default (no busy
//! poll; alone on its core, so an idle tile waits in its backend's kernel
//! wait, woken by a datagram or by the egress doorbell): its thread's user
//! plus system time from /proc over the run, with the echo tile on another
//! core. Beside it, in the same run, the baseline's share at the same rate,
//! blocked in recvmmsg when idle: what a plain kernel socket costs on this
//! path (on veth the peer's receive of each reply runs inside the sender's
//! transmit, so it is charged to the answering thread).
#![allow(unsafe_code)] // recvmmsg/sendmmsg for the baseline and the generator
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "syscall sizes and batch counts, all small"
)]

use std::{
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use tephra_dataplane::{
    NetConfig,
    backend::{
        Backend,
        af_xdp::{AfXdpBackend, AfXdpConfig, XdpMode},
        socket::SocketBackend,
    },
    net::NetTile,
    netns::{self, VethPair},
    packet::PacketPool,
    ring::{ring, ring_with_doorbell},
    runtime::{Idle, Runtime, Tile},
    topology::pin_current_thread,
};

const PORT: u16 = 9200;
const PAYLOAD_BYTES: usize = 128;
const BATCH: usize = 32;
const WINDOW: usize = 512;
const MEASURE: Duration = Duration::from_secs(3);
const SERVER_CORE: usize = 0;
/// Datagrams a second (one transaction each) for the CPU-share figure, and for how long.
const CPU_RATE: u64 = 50_000;
const CPU_MEASURE: Duration = Duration::from_secs(5);
/// Datagrams sent every CPU_TICK at CPU_RATE.
const CPU_TICK: Duration = Duration::from_micros(500);
/// The benchmark's own sockets' receive buffer (the generator's above all).
const SOCKET_RECEIVE_BUFFER_BYTES: libc::c_int = 8 << 20;
const CLIENT_CORE: usize = 1;

/// Batched datagram I/O on a non-blocking socket.
struct Mmsg {
    socket: UdpSocket,
    buffers: Vec<[u8; 2048]>,
    addrs: Vec<libc::sockaddr_in>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

impl Mmsg {
    fn new(socket: UdpSocket) -> Self {
        socket.set_nonblocking(true).unwrap();
        // Room for the replies of a burst while the generator is descheduled:
        // a drop in its own socket would be counted against the tile.
        let bytes = SOCKET_RECEIVE_BUFFER_BYTES;
        // SAFETY: an int option on our own socket (FORCE: root, past rmem_max).
        let set = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&raw const bytes).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        assert_eq!(set, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
        let mut this = Self {
            socket,
            buffers: vec![[0u8; 2048]; BATCH],
            // SAFETY: plain old data, zero is empty.
            addrs: vec![unsafe { std::mem::zeroed() }; BATCH],
            iovecs: Vec::with_capacity(BATCH),
            headers: Vec::with_capacity(BATCH),
        };
        for i in 0..BATCH {
            this.iovecs.push(libc::iovec { iov_base: this.buffers[i].as_mut_ptr().cast(), iov_len: 2048 });
        }
        for i in 0..BATCH {
            // SAFETY: as above.
            let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
            header.msg_hdr.msg_name = (&raw mut this.addrs[i]).cast();
            header.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            header.msg_hdr.msg_iov = &raw mut this.iovecs[i];
            header.msg_hdr.msg_iovlen = 1;
            this.headers.push(header);
        }
        this
    }

    fn receive(&mut self) -> usize {
        for (i, header) in self.headers.iter_mut().enumerate() {
            header.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            self.iovecs[i].iov_len = 2048;
        }
        // SAFETY: every header points into this struct's buffers.
        let n = unsafe {
            libc::recvmmsg(
                self.socket.as_raw_fd(),
                self.headers.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 { 0 } else { n as usize }
    }

    /// Sends the first `count` buffers back where they came from (lengths as received).
    fn echo(&mut self, count: usize) {
        for i in 0..count {
            self.iovecs[i].iov_len = self.headers[i].msg_len as usize;
        }
        // SAFETY: as above.
        unsafe { libc::sendmmsg(self.socket.as_raw_fd(), self.headers.as_mut_ptr(), count as u32, 0) };
    }

    /// Sends `count` datagrams to `to`.
    fn send_to(&mut self, to: SocketAddrV4, count: usize) -> usize {
        for i in 0..count {
            self.addrs[i] = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: to.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(to.ip().octets()) },
                sin_zero: [0; 8],
            };
            self.iovecs[i].iov_len = PAYLOAD_BYTES;
            self.headers[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
        }
        // SAFETY: as above.
        let n = unsafe { libc::sendmmsg(self.socket.as_raw_fd(), self.headers.as_mut_ptr(), count as u32, 0) };
        if n < 0 { 0 } else { n as usize }
    }
}

/// Closed-loop load from namespace b: replies per second over MEASURE.
fn closed_loop(pair: &VethPair, to: SocketAddrV4) -> f64 {
    thread::scope(|scope| {
        scope
            .spawn(|| {
                pair.enter(1).unwrap();
                pin_current_thread(&[CLIENT_CORE]);
                let mut io = Mmsg::new(UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap());
                let (mut outstanding, mut replies) = (0usize, 0u64);
                let start = Instant::now();
                let mut last_reply = Instant::now();
                let mut measured_from = None;
                while start.elapsed() < MEASURE + Duration::from_millis(500) {
                    if outstanding + BATCH <= WINDOW {
                        outstanding += io.send_to(to, BATCH);
                    }
                    let got = io.receive();
                    if got > 0 {
                        outstanding = outstanding.saturating_sub(got);
                        last_reply = Instant::now();
                        if start.elapsed() > Duration::from_millis(500) {
                            measured_from.get_or_insert_with(Instant::now);
                            replies += got as u64;
                        }
                    } else if last_reply.elapsed() > Duration::from_millis(20) {
                        // Lost datagrams: open the window again.
                        outstanding = 0;
                        last_reply = Instant::now();
                    }
                }
                let seconds = measured_from.map_or(1.0, |from: Instant| from.elapsed().as_secs_f64());
                replies as f64 / seconds
            })
            .join()
            .unwrap()
    })
}

/// The baseline: a kernel socket on SERVER_CORE answering every datagram
/// with recvmmsg/sendmmsg, in one thread named BASELINE_THREAD. Busy-polling
/// for the maximum rate; otherwise blocked in recvmmsg until a datagram
/// arrives, as a server that does not spin would be.
struct Baseline {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<()>,
}

const BASELINE_THREAD: &str = "baseline-net";

impl Baseline {
    fn start(pair: &VethPair, busy_poll: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ip = pair.addresses[0];
        let socket = thread::scope(|scope| {
            scope
                .spawn(|| {
                    pair.enter(0).unwrap();
                    UdpSocket::bind((ip, PORT)).unwrap()
                })
                .join()
                .unwrap()
        });
        let thread = thread::Builder::new()
            .name(BASELINE_THREAD.into())
            .spawn({
                let stop = stop.clone();
                move || {
                    pin_current_thread(&[SERVER_CORE]);
                    let mut io = Mmsg::new(socket);
                    if !busy_poll {
                        // Blocks for the first datagram, and wakes to look at `stop`.
                        io.socket.set_nonblocking(false).unwrap();
                        io.socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                    }
                    while !stop.load(Ordering::Relaxed) {
                        let n = io.receive();
                        if n > 0 {
                            io.echo(n);
                        }
                    }
                }
            })
            .unwrap();
        Self { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
    }
}

fn baseline(pair: &VethPair) -> f64 {
    let server = Baseline::start(pair, true);
    let rate = closed_loop(pair, SocketAddrV4::new(pair.addresses[0], PORT));
    server.stop();
    rate
}

/// Stands in for verify: every datagram is answered with its own bytes.
struct Echo {
    ingress: tephra_dataplane::PacketConsumer,
    egress: tephra_dataplane::PacketProducer,
    pool: Arc<PacketPool>,
}

impl Tile for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn poll(&mut self) -> usize {
        let mut moved = 0;
        while let Some(packet) = self.ingress.pop() {
            if let Err(packet) = self.egress.push(packet) {
                // Egress full: the datagram goes unanswered, as the node's would.
                self.pool.give_back(packet);
                break;
            }
            moved += 1;
        }
        moved
    }
}

/// Starts a backend behind the net tile on SERVER_CORE with the echo tile, on
/// the same core (`echo_core` None) or on its own executor.
fn start_tiles<B: Backend + 'static>(
    pair: &VethPair,
    open: impl FnOnce() -> B + Send,
    idle: Idle,
    echo_core: Option<usize>,
) -> Runtime {
    let pool = Arc::new(PacketPool::new(4096));
    let (ingress_producer, ingress, _) = ring(1024);
    // As the node does: replies ring the tile's doorbell, so an idle tile alone
    // on its core waits in its backend's kernel wait.
    let (egress, egress_consumer, _) = ring_with_doorbell(1024).unwrap();
    thread::scope(|scope| {
        scope
            .spawn(|| {
                pair.enter(0).unwrap();
                let backend = open();
                let (net, _) =
                    NetTile::new(backend, pool.clone(), ingress_producer, egress_consumer, Box::new(|| {}), 64, None);
                let echo = Echo { ingress, egress, pool: pool.clone() };
                let placement: Vec<(usize, Vec<Box<dyn Tile>>)> = match echo_core {
                    None => vec![(SERVER_CORE, vec![Box::new(net), Box::new(echo)])],
                    Some(core) => vec![(SERVER_CORE, vec![Box::new(net)]), (core, vec![Box::new(echo)])],
                };
                Runtime::start(placement, idle).unwrap()
            })
            .join()
            .unwrap()
    })
}

/// The closed-loop maximum of a backend, busy-polling.
fn tile<B: Backend + 'static>(pair: &VethPair, open: impl FnOnce() -> B + Send) -> f64 {
    let runtime = start_tiles(pair, open, Idle { busy_poll: true, sleep_us: 0 }, None);
    let rate = closed_loop(pair, SocketAddrV4::new(pair.addresses[0], PORT));
    runtime.stop();
    rate
}

/// User and system seconds of this process's threads whose names start
/// with `prefix` (glommio names an executor's threads `<name>-<id>`).
fn thread_cpu_seconds(prefix: &str) -> (f64, f64) {
    // SAFETY: sysconf has no preconditions.
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let (mut user, mut system) = (0u64, 0u64);
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if std::fs::read_to_string(task.path().join("comm")).is_ok_and(|comm| comm.starts_with(prefix)) {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap();
            // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
            let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
            user += fields[11].parse::<u64>().unwrap();
            system += fields[12].parse::<u64>().unwrap();
        }
    }
    (user as f64 / ticks_per_s, system as f64 / ticks_per_s)
}

/// The node's default `net.idle_sleep_us`, from config/default.toml.
fn default_idle_sleep_us() -> u64 {
    #[derive(serde::Deserialize)]
    struct Defaults {
        net: NetConfig,
    }
    let defaults: Defaults = toml::from_str(include_str!("../../config/default.toml")).expect("config/default.toml");
    defaults.net.idle_sleep_us
}

/// The share of a core (user, system) of the server threads whose names
/// start with `prefix`, and the replies per second, at CPU_RATE, open loop
/// from namespace b, against the server already answering on PORT.
fn cpu_share(pair: &VethPair, prefix: &str) -> ((f64, f64), f64) {
    let to = SocketAddrV4::new(pair.addresses[0], PORT);
    let per_tick = (CPU_RATE as f64 * CPU_TICK.as_secs_f64()) as usize;
    let before = thread_cpu_seconds(prefix);
    let start = Instant::now();
    let replies = thread::scope(|scope| {
        scope
            .spawn(|| {
                pair.enter(1).unwrap();
                pin_current_thread(&[CLIENT_CORE]);
                let mut io = Mmsg::new(UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap());
                let mut replies = 0u64;
                let mut tick = 0u32;
                while start.elapsed() < CPU_MEASURE {
                    let due = start + CPU_TICK * tick;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        thread::sleep(wait);
                    }
                    io.send_to(to, per_tick);
                    tick += 1;
                    while let got @ 1.. = io.receive() {
                        replies += got as u64;
                    }
                }
                replies
            })
            .join()
            .unwrap()
    });
    let seconds = start.elapsed().as_secs_f64();
    let after = thread_cpu_seconds(prefix);
    (((after.0 - before.0) / seconds, (after.1 - before.1) / seconds), replies as f64 / seconds)
}

/// The net tile's share of a core as the node runs it: no busy poll, alone
/// on its core (so an idle tile waits in its backend's kernel wait, or
/// sleeps `sleep_us` where the backend cannot), the echo tile elsewhere.
fn tile_cpu_share<B: Backend + 'static>(
    pair: &VethPair,
    sleep_us: u64,
    open: impl FnOnce() -> B + Send,
) -> ((f64, f64), f64) {
    let runtime = start_tiles(pair, open, Idle { busy_poll: false, sleep_us }, Some(CLIENT_CORE));
    let share = cpu_share(pair, "tephra-net-");
    runtime.stop();
    share
}

/// The `socket` backend on side a's address (called in its namespace).
fn socket_backend(pair: &VethPair) -> SocketBackend {
    let socket = UdpSocket::bind((pair.addresses[0], PORT)).unwrap();
    SocketBackend::open(socket, 256, 256).unwrap()
}

/// The `af_xdp` backend on side a's interface (called in its namespace).
fn af_xdp_backend(pair: &VethPair, mode: XdpMode) -> AfXdpBackend {
    let config = AfXdpConfig { interface: pair.interfaces[0].clone(), queue: 0, mode, frames: 4096 };
    AfXdpBackend::open(&config, pair.addresses[0], PORT, None).unwrap()
}

fn report_share(path: &str, (user, system): (f64, f64), answered: f64) {
    println!(
        "{path:<34} {:>6.1}% of a core (user {:.1}%, system {:.1}%)  {answered:.0} replies/s",
        100.0 * (user + system),
        100.0 * user,
        100.0 * system
    );
}

fn main() {
    let sleep_us = default_idle_sleep_us();
    if let Some(reason) = netns::unavailable() {
        println!("skipped: the net benchmark {reason}");
        return;
    }
    let pair = VethPair::create("tpbn", 74).expect("a veth pair");
    println!("receive-and-reply, {PAYLOAD_BYTES}-byte datagrams, one core answering, closed loop (window {WINDOW})");
    let base = baseline(&pair);
    println!("{:<34} {:>12.0} datagrams/s  1.00x", "kernel socket, recvmmsg/sendmmsg", base);
    let socket = tile(&pair, || socket_backend(&pair));
    println!("{:<34} {:>12.0} datagrams/s  {:.2}x", "net tile, socket (io_uring)", socket, socket / base);
    for (mode, name) in
        [(XdpMode::Skb, "net tile, af_xdp (copy, skb mode)"), (XdpMode::Native, "net tile, af_xdp (copy, native)")]
    {
        let xdp = tile(&pair, || af_xdp_backend(&pair, mode));
        println!("{name:<34} {xdp:>12.0} datagrams/s  {:.2}x", xdp / base);
    }
    println!(
        "net tile's share of a core at {CPU_RATE} datagrams/s of one transaction each, open loop, no busy poll, \
         waiting in the kernel when idle (goal at most 10%)"
    );
    let server = Baseline::start(&pair, false);
    let (share, answered) = cpu_share(&pair, BASELINE_THREAD);
    server.stop();
    report_share("kernel socket, recvmmsg/sendmmsg", share, answered);
    let (share, answered) = tile_cpu_share(&pair, sleep_us, || socket_backend(&pair));
    report_share("net tile, socket (io_uring)", share, answered);
    let (share, answered) = tile_cpu_share(&pair, sleep_us, || af_xdp_backend(&pair, XdpMode::Skb));
    report_share("net tile, af_xdp (copy, skb mode)", share, answered);
    #[cfg(feature = "dpdk")]
    {
        // The EAL starts once per process, so one virtual device a run:
        // `-- --dpdk-af-xdp` for DPDK's own AF_XDP driver.
        let interface = pair.interfaces[0].clone();
        let vdev = if std::env::args().any(|arg| arg == "--dpdk-af-xdp") {
            format!("net_af_xdp0,iface={interface},start_queue=0,queue_count=1")
        } else {
            format!("net_af_packet0,iface={interface}")
        };
        let dpdk = tile(&pair, || {
            let config = tephra_dataplane::backend::DpdkConfig {
                eal_args: ["-l", "0", "--no-shconf", "--no-telemetry", "--no-pci", "--no-huge", "-m", "512"]
                    .iter()
                    .map(|arg| arg.to_string())
                    .chain([format!("--vdev={vdev}")])
                    .collect(),
                port_id: 0,
                rx_queue_depth: 1024,
                tx_queue_depth: 1024,
                mbufs: 8191,
                burst_size: 32,
                mbuf_data_room: 2048,
                promiscuous: false,
            };
            tephra_dataplane::backend::dpdk::DpdkBackend::open(&config, pair.addresses[0], PORT).unwrap()
        });
        let name = format!("net tile, dpdk ({})", vdev.split(',').next().unwrap_or_default());
        println!("{name:<34} {dpdk:>12.0} datagrams/s  {:.2}x", dpdk / base);
    }
}
