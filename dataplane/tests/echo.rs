//! The net tile end to end with each backend: a sender's datagrams arrive in
//! the ingress ring, an echo stage turns each into its reply, and every one
//! comes back. The `af_xdp` case runs across a veth pair between two network
//! namespaces (root); it says why when it skips. As in the node, replies
//! ring the tile's doorbell, so an idle tile waits in its backend's kernel
//! wait (`Backend::wait`), which these tests therefore cover.

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use tephra_dataplane::{
    backend::{
        Backend, SourceLimit,
        af_xdp::{AfXdpBackend, AfXdpConfig, XdpMode},
        socket::SocketBackend,
    },
    net::{NetStats, NetTile},
    netns::{self, VethPair},
    packet::{Packet, PacketPool},
    ratelimit::RateLimiter,
    ring::{Consumer, Doorbell, Producer, ring, ring_with_doorbell},
    runtime::{Idle, Runtime, Tile},
    topology::pin_current_thread,
};

const DATAGRAMS: u32 = 5_000;

/// Replies to each datagram with its own bytes, as the verify stage would
/// with its answer.
fn echo(ingress: &mut Consumer<Box<Packet>>, egress: &mut Producer<Box<Packet>>) -> usize {
    let mut moved = 0;
    while let Some(mut packet) = ingress.pop() {
        loop {
            match egress.push(packet) {
                Ok(()) => break,
                Err(back) => {
                    packet = back;
                    thread::yield_now();
                }
            }
        }
        moved += 1;
    }
    moved
}

/// Sends DATAGRAMS numbered datagrams with at most `window` unanswered and
/// returns how many distinct ones came back.
fn send_and_collect(sender: &UdpSocket, to: SocketAddr, window: u32) -> u32 {
    sender.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut answered = vec![false; DATAGRAMS as usize];
    let (mut sent, mut received) = (0u32, 0u32);
    let mut buffer = [0u8; 64];
    let deadline = Instant::now() + Duration::from_secs(60);
    while received < DATAGRAMS && Instant::now() < deadline {
        while sent < DATAGRAMS && sent - received < window {
            let mut datagram = [0u8; 32];
            datagram[..4].copy_from_slice(&sent.to_be_bytes());
            sender.send_to(&datagram, to).unwrap();
            sent += 1;
        }
        match sender.recv_from(&mut buffer) {
            Ok((32, _)) => {
                let number = u32::from_be_bytes(buffer[..4].try_into().unwrap()) as usize;
                if !std::mem::replace(&mut answered[number], true) {
                    received += 1;
                }
            }
            Ok(_) => panic!("a reply of the wrong size"),
            // A datagram lost on the way (UDP): send the window again.
            Err(_) => sent = received,
        }
    }
    received
}

type Started = (Runtime, Arc<AtomicBool>, thread::JoinHandle<()>, Arc<NetStats>);

fn start<B: Backend + 'static>(backend: B, source_limit: Option<RateLimiter>) -> Started {
    let pool = Arc::new(PacketPool::new(1024));
    let (ingress_producer, mut ingress, _) = ring(512);
    let (mut egress, egress_consumer, _) = ring_with_doorbell(512).unwrap();
    let (tile, stats) =
        NetTile::new(backend, pool, ingress_producer, egress_consumer, Box::new(|| {}), 64, source_limit);
    let runtime =
        Runtime::start(vec![(0, vec![Box::new(tile) as Box<dyn Tile>])], Idle { busy_poll: false, sleep_us: 20 })
            .expect("the runtime starts");
    let stop = Arc::new(AtomicBool::new(false));
    let echo_stop = stop.clone();
    let echo = thread::spawn(move || {
        while !echo_stop.load(Ordering::Relaxed) {
            if echo(&mut ingress, &mut egress) == 0 {
                thread::sleep(Duration::from_micros(20));
            }
        }
    });
    (runtime, stop, echo, stats)
}

/// The socket backend on a free loopback port, and its address.
fn loopback_socket_backend() -> (SocketBackend, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = socket.local_addr().unwrap();
    (SocketBackend::open(socket, 128, 128).unwrap(), address)
}

#[test]
fn socket_backend_answers_every_datagram() {
    let (backend, address) = loopback_socket_backend();
    let (runtime, stop, echo, _) = start(backend, None);
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    assert_eq!(send_and_collect(&sender, address, 64), DATAGRAMS);
    stop.store(true, Ordering::Relaxed);
    echo.join().unwrap();
    runtime.stop();
}

#[test]
fn a_source_over_its_datagram_rate_is_dropped_in_the_tile_and_others_pass() {
    let (backend, address) = loopback_socket_backend();
    // 100 datagrams a second after a burst of 50, per source.
    let (runtime, stop, echo, stats) = start(backend, Some(RateLimiter::new(100, 50, 16, Instant::now())));
    let flooder = UdpSocket::bind("127.0.0.2:0").unwrap();
    let started = Instant::now();
    for n in 0..2_000u32 {
        flooder.send_to(&n.to_be_bytes(), address).unwrap();
        if n % 64 == 0 {
            thread::sleep(Duration::from_millis(1));
        }
    }
    flooder.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut buffer = [0u8; 64];
    let mut echoed = 0u64;
    while flooder.recv_from(&mut buffer).is_ok() {
        echoed += 1;
    }
    // 100 a second: one per 10 ms since the first send, rounded up.
    let allowed_max = 50 + u64::try_from(started.elapsed().as_millis()).unwrap() / 10 + 1;
    assert!(echoed <= allowed_max, "{echoed} datagrams passed, at most {allowed_max} may");
    assert!(echoed >= 50, "the burst passes: {echoed}");
    assert!(stats.dropped_rate_limited.load(Ordering::Relaxed) > 0, "the drops are counted");
    // Another source has its own bucket: every one of its datagrams is answered.
    let honest = UdpSocket::bind("127.0.0.1:0").unwrap();
    honest.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for n in 0..20u32 {
        honest.send_to(&n.to_be_bytes(), address).unwrap();
        let (len, _) = honest.recv_from(&mut buffer).expect("the other source is answered");
        assert_eq!(&buffer[..len], n.to_be_bytes());
    }
    stop.store(true, Ordering::Relaxed);
    echo.join().unwrap();
    runtime.stop();
}

/// Two namespaces joined by a veth pair, or `None` where this machine
/// cannot make them and the test may skip (see `tephra_testkit::require`).
fn veth_pair(name: &str, subnet: u8) -> Option<VethPair> {
    if !tephra_testkit::require(&[tephra_testkit::Need::checked(netns::unavailable())]) {
        return None;
    }
    Some(VethPair::create(name, subnet).expect("a veth pair between two namespaces"))
}

/// The af_xdp backend on side a's interface, skb mode, queue 0.
fn af_xdp_config(pair: &VethPair, frames: u32) -> AfXdpConfig {
    AfXdpConfig { interface: pair.interfaces[0].clone(), queue: 0, mode: XdpMode::Skb, frames }
}

#[test]
fn af_xdp_backend_answers_every_datagram_across_a_veth_pair() {
    let Some(pair) = veth_pair("tpxe", 71) else { return };
    let port = 9100;
    // The tile's side: this thread enters namespace a, so the executor it
    // starts runs there too.
    let tile_side = {
        let config = af_xdp_config(&pair, 4096);
        let address = pair.addresses[0];
        let pair_ref = &pair;
        thread::scope(|scope| {
            scope
                .spawn(move || {
                    pair_ref.enter(0).unwrap();
                    let backend = AfXdpBackend::open(&config, address, port, None).expect("the AF_XDP socket binds");
                    start(backend, None)
                })
                .join()
                .unwrap()
        })
    };
    let to = SocketAddr::V4(SocketAddrV4::new(pair.addresses[0], port));
    let pair_ref = &pair;
    let answered = thread::scope(|scope| {
        scope
            .spawn(move || {
                pair_ref.enter(1).unwrap();
                let sender = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
                let answered = send_and_collect(&sender, to, 64);
                // Everything else still reaches the kernel: a ping answers.
                let ping = std::process::Command::new("ping")
                    .args(["-c", "1", "-W", "2", &pair_ref.addresses[0].to_string()])
                    .status()
                    .map(|status| status.success());
                (answered, ping)
            })
            .join()
            .unwrap()
    });
    let (runtime, stop, echo, _) = tile_side;
    stop.store(true, Ordering::Relaxed);
    echo.join().unwrap();
    runtime.stop();
    assert_eq!(answered.0, DATAGRAMS);
    if let Ok(ping) = answered.1 {
        assert!(ping, "ICMP passes to the kernel beside the XDP program");
    }
}

#[test]
fn af_xdp_drops_a_source_over_its_rate_in_the_xdp_program() {
    let Some(pair) = veth_pair("tpxl", 72) else { return };
    // A second source address on the senders' side.
    let flood_address = Ipv4Addr::new(10, 72, 0, 3);
    let added = std::process::Command::new("ip")
        .args(["-n", &pair.namespaces[1], "addr", "add", &format!("{flood_address}/24"), "dev", &pair.interfaces[1]])
        .status()
        .unwrap();
    assert!(added.success(), "a second address in namespace b");
    let port = 9101;
    // 100 datagrams a second after a burst of 50, per source, in the XDP program.
    let limit = SourceLimit { datagrams_per_s: 100, burst_datagrams: 50 };
    let tile_side = {
        let config = af_xdp_config(&pair, 4096);
        let (address, pair_ref) = (pair.addresses[0], &pair);
        thread::scope(|scope| {
            scope
                .spawn(move || {
                    pair_ref.enter(0).unwrap();
                    let backend = AfXdpBackend::open(&config, address, port, Some(limit)).expect("the socket binds");
                    start(backend, None)
                })
                .join()
                .unwrap()
        })
    };
    let to = SocketAddr::V4(SocketAddrV4::new(pair.addresses[0], port));
    let pair_ref = &pair;
    let (flood_echoed, allowed_max) = thread::scope(|scope| {
        scope
            .spawn(move || {
                pair_ref.enter(1).unwrap();
                // The program's buckets are per CPU, and on veth a datagram is
                // filtered on its sender's CPU: one core, one bucket.
                pin_current_thread(&[1]);
                let flooder = UdpSocket::bind((flood_address, 0)).unwrap();
                let started = Instant::now();
                for n in 0..2_000u32 {
                    flooder.send_to(&n.to_be_bytes(), to).unwrap();
                    if n % 64 == 0 {
                        thread::sleep(Duration::from_millis(1));
                    }
                }
                flooder.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
                let (mut buffer, mut echoed) = ([0u8; 64], 0u64);
                while flooder.recv_from(&mut buffer).is_ok() {
                    echoed += 1;
                }
                let allowed_max = 50 + u64::try_from(started.elapsed().as_millis()).unwrap() / 10 + 1;
                // The other source has its own bucket: every datagram is answered.
                let honest = UdpSocket::bind((pair_ref.addresses[1], 0)).unwrap();
                honest.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                for n in 0..20u32 {
                    honest.send_to(&n.to_be_bytes(), to).unwrap();
                    let (len, _) = honest.recv_from(&mut buffer).expect("the other source is answered");
                    assert_eq!(&buffer[..len], n.to_be_bytes());
                }
                (echoed, allowed_max)
            })
            .join()
            .unwrap()
    });
    let (runtime, stop, echo, stats) = tile_side;
    // The tile reads the program's count at housekeeping.
    thread::sleep(Duration::from_millis(200));
    let dropped = stats.dropped_rate_limited_below.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    echo.join().unwrap();
    runtime.stop();
    assert!(flood_echoed <= allowed_max, "{flood_echoed} datagrams passed, at most {allowed_max} may");
    assert!(flood_echoed >= 50, "the burst passes: {flood_echoed}");
    assert!(dropped > 0, "the program counts its drops: {dropped}");
    assert_eq!(stats.dropped_rate_limited.load(Ordering::Relaxed), 0, "dropped below the tile, not in it");
}

/// The af_xdp backend's kernel wait ends when a datagram arrives and when
/// the doorbell is written, long before its timeout, and a written doorbell
/// is drained so that the next wait blocks again.
#[test]
fn af_xdp_wait_ends_on_a_datagram_and_on_the_doorbell() {
    let Some(pair) = veth_pair("tpxw", 76) else { return };
    let port = 9102;
    let to = SocketAddrV4::new(pair.addresses[0], port);
    let doorbell_owned = Doorbell::new().unwrap();
    let doorbell: &Doorbell = &doorbell_owned;
    let long = Duration::from_secs(5);
    let pair_ref = &pair;
    thread::scope(|scope| {
        scope
            .spawn(move || {
                pair_ref.enter(0).unwrap();
                let config = af_xdp_config(pair_ref, 64);
                let mut backend = AfXdpBackend::open(&config, pair_ref.addresses[0], port, None).unwrap();
                let pool = PacketPool::new(8);
                let mut packets: Vec<_> = (0..8).map(|_| pool.take().unwrap()).collect();
                assert_eq!(backend.receive(&mut packets).unwrap(), 0, "nothing sent yet");
                // Nothing arrives: the wait lasts its (short) timeout.
                let started = Instant::now();
                assert!(backend.wait(Duration::from_millis(50), doorbell.fd()).unwrap());
                assert!(started.elapsed() >= Duration::from_millis(40), "an idle wait lasts its timeout");

                let sender = scope.spawn(move || {
                    pair_ref.enter(1).unwrap();
                    thread::sleep(Duration::from_millis(100));
                    UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap().send_to(b"wake", to).unwrap();
                });
                let started = Instant::now();
                assert!(backend.wait(long, doorbell.fd()).unwrap());
                assert!(started.elapsed() < long / 2, "the datagram ended the wait");
                sender.join().unwrap();
                assert_eq!(backend.receive(&mut packets).unwrap(), 1);
                assert_eq!(packets[0].payload(), b"wake");

                let ringer = scope.spawn(|| {
                    thread::sleep(Duration::from_millis(100));
                    rustix::io::write(doorbell.fd(), &1u64.to_ne_bytes()).unwrap();
                });
                let started = Instant::now();
                assert!(backend.wait(long, doorbell.fd()).unwrap());
                assert!(started.elapsed() < long / 2, "the doorbell ended the wait");
                ringer.join().unwrap();
                let started = Instant::now();
                assert!(backend.wait(Duration::from_millis(50), doorbell.fd()).unwrap());
                assert!(started.elapsed() >= Duration::from_millis(40), "the doorbell was drained");
            })
            .join()
            .unwrap();
    });
}
