//! Reliability figures for docs/reliability.md, over UDP (docs/wire.md):
//!
//! - flood: honest transfers at a fixed rate, send times scheduled in
//!   advance, first unloaded and then, in the same run, under floods at the
//!   most this machine generates (garbage datagrams and unfunded senders
//!   over UDP from their own source addresses, nonce-gap spam and oversized
//!   bodies over JSON-RPC): preconfirmation p50/p99, replies lost, memory,
//!   and the floods' rates. Twice: with the flood generators competing with
//!   the node for its cores, and with them at SCHED_IDLE, so that the node's
//!   cores serve the node first, as they would with the floods sent from a
//!   machine of their own (this one has two cores).
//!   With `--af-xdp` (root) the node runs on `af_xdp` in one network
//!   namespace and every client in another, across a veth pair, so that the
//!   XDP program's per-source drop is in the path.
//! - soak (`--soak-seconds N`): the maximum sustained rate, measured closed
//!   loop, then N seconds open loop at 80% of it; per window the achieved
//!   rate, p50/p99 and resident memory, then drift first window to last.
//!
//! `cargo bench -p tephra-cli --bench reliability [-- [--af-xdp] [--phase-seconds N] | --soak-seconds 600]`

#![allow(clippy::print_stdout, reason = "a benchmark reports its figures on stdout")]
#![allow(clippy::cast_possible_truncation, reason = "ids, counts and ring slots far below 2^32")]
#![allow(unsafe_code, reason = "sched_setscheduler puts the flood generators at SCHED_IDLE")]

mod support;

use std::{
    net::UdpSocket,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, U256, hex};
use serde_json::json;
use support::{Peer, genesis, percentile_ms, start_tephra};
use tephra_dataplane::netns::VethPair;
use tephra_exec::dev::DevKey;
use tephra_types::wire::{self, TxReply};

/// Honest transfers per second in the flood part, and seconds per phase.
const HONEST_RATE: u64 = 200;
/// The default; `--phase-seconds N` runs longer phases (more samples).
const PHASE_SECONDS: u64 = 10;
/// Per-source limits for the flood part, in the net tile (and the XDP
/// program) and at verify: ten times the honest client's rate.
const FLOOD_UDP_LIMITS: &str = "source_txs_per_s = 2000\nsource_burst_txs = 200\n";
const FLOOD_NET_LIMITS: &str = "source_datagrams_per_s = 2000\nsource_burst_datagrams = 200\n";
/// The veth subnet of `--af-xdp`: the node at .1, the honest client at .2,
/// the two floods at .3 and .4.
const AF_XDP_SUBNET: u8 = 75;
/// The soak keeps two minutes of blocks for RPC (1 s blocks), so that what
/// memory holds reaches its bound early and any growth after it is a leak.
const SOAK_CONFIG: &str = "[rpc]\nhistory_blocks_max = 120\n";
/// Accounts funded: the flood part's honest senders, then the soak's.
const SOAK_ACCOUNTS: u64 = 4_000;
/// Transactions per datagram while soaking, and the soak's window.
const SOAK_TXS_PER_DATAGRAM: usize = 8;
const SOAK_WINDOW: Duration = Duration::from_secs(30);
/// Closed-loop clients measuring the maximum sustained rate.
const MAX_CLIENTS: usize = 8;
/// Request ids are slots in a ring of send times.
const SEND_TIMES: usize = 1 << 20;
/// How long after its last send a phase waits for replies.
const REPLY_GRACE: Duration = Duration::from_secs(2);

fn transfer(key: &DevKey, nonce: u64) -> Vec<u8> {
    key.transfer(31337, nonce, Address::with_last_byte(0xee), U256::from(1)).encoded_2718()
}

/// Preconfirmation latencies of datagrams sent open loop, by request id.
struct Recorder {
    start: Instant,
    sent_ns: Vec<AtomicU64>,
    samples: Mutex<Vec<(Instant, Duration)>>,
    txs_preconfirmed: AtomicU64,
}

impl Recorder {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            sent_ns: (0..SEND_TIMES).map(|_| AtomicU64::new(0)).collect(),
            samples: Mutex::new(Vec::new()),
            txs_preconfirmed: AtomicU64::new(0),
        })
    }

    fn sent(&self, id: u64, scheduled: Instant) {
        let ns = u64::try_from(scheduled.duration_since(self.start).as_nanos()).unwrap();
        self.sent_ns[id as usize % SEND_TIMES].store(ns, Ordering::Relaxed);
    }

    /// Reads replies on `socket` until `stop`.
    fn listen(self: &Arc<Self>, socket: UdpSocket, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
        let recorder = self.clone();
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; wire::DATAGRAM_SIZE_MAX_BYTES];
            while !stop.load(Ordering::Relaxed) {
                let Ok((len, _)) = socket.recv_from(&mut buffer) else { continue };
                let Some((id, Ok(answers))) = wire::decode_reply(&buffer[..len]) else { continue };
                let now = Instant::now();
                let preconfirmed = answers.iter().filter(|a| matches!(a, TxReply::Preconfirmed { .. })).count();
                if preconfirmed == 0 {
                    continue;
                }
                recorder.txs_preconfirmed.fetch_add(preconfirmed as u64, Ordering::Relaxed);
                let sent = recorder.start
                    + Duration::from_nanos(recorder.sent_ns[id as usize % SEND_TIMES].load(Ordering::Relaxed));
                recorder.samples.lock().unwrap().push((now, now.duration_since(sent)));
            }
        })
    }

    fn take(&self) -> Vec<(Instant, Duration)> {
        std::mem::take(&mut *self.samples.lock().unwrap())
    }
}

/// Sends `datagrams` open loop at `per_s` datagrams a second, ids from
/// `first_id`, and waits for the stragglers.
fn open_loop(node: &Peer, socket: &UdpSocket, recorder: &Recorder, datagrams: &[(u64, Vec<u8>)], per_s: f64) {
    let interval = Duration::from_secs_f64(1.0 / per_s);
    let start = Instant::now() + Duration::from_millis(20);
    for (n, (id, datagram)) in datagrams.iter().enumerate() {
        let scheduled = start + interval * u32::try_from(n).unwrap();
        if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        recorder.sent(*id, scheduled);
        let _ = socket.send_to(datagram, &node.udp_address);
    }
    std::thread::sleep(REPLY_GRACE);
}

fn report(label: &str, samples: &mut [(Instant, Duration)], sent: usize, node: &Peer) -> f64 {
    samples.sort_by_key(|s| s.1);
    let latencies: Vec<Duration> = samples.iter().map(|s| s.1).collect();
    let (p50, p99) = (percentile_ms(&latencies, 500), percentile_ms(&latencies, 990));
    println!(
        "  {label:<10} p50 {p50:>8.2} ms   p99 {p99:>8.2} ms   answered {}/{sent} ({:.1}% lost)   rss {} MiB",
        latencies.len(),
        100.0 * (1.0 - latencies.len() as f64 / sent as f64),
        node.rss_bytes() >> 20
    );
    p99
}

/// Datagrams of well-formed transfers from unfunded senders.
fn unfunded_datagrams() -> Vec<Vec<u8>> {
    (0..512u64)
        .map(|i| {
            let mut datagram = Vec::new();
            wire::encode_request(i, false, &[&transfer(&DevKey::from_seed(9_000_000 + i), 0)], &mut datagram);
            datagram
        })
        .collect()
}

fn garbage_datagrams() -> Vec<Vec<u8>> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    (0..512usize)
        .map(|i| {
            (0..1 + (i * 37) % 1400)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed.to_le_bytes()[0]
                })
                .collect()
        })
        .collect()
}

/// What the floods sent, for their rates.
#[derive(Default)]
struct FloodCounts {
    /// Garbage, then unfunded senders' datagrams.
    udp_datagrams: [AtomicU64; 2],
    rpc_requests: AtomicU64,
}

/// Puts the calling thread at SCHED_IDLE: it runs only on CPU time no other
/// thread of the machine wants.
fn yield_to_everything() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` outlives the call.
    let set = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &raw const param) };
    assert_eq!(set, 0, "SCHED_IDLE: {}", std::io::Error::last_os_error());
}

/// The floods, each on its own thread, until `stop`: UDP from `sources`
/// (sockets made in the calling thread's namespace), JSON-RPC from a thread
/// that first runs `enter_rpc_side`; at SCHED_IDLE when `yielding`.
fn floods(
    node: &Peer,
    stop: &Arc<AtomicBool>,
    sources: [String; 2],
    enter_rpc_side: impl FnOnce() + Send + 'static,
    yielding: bool,
    counts: &Arc<FloodCounts>,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut handles = Vec::new();
    let [garbage_source, unfunded_source] = sources;
    for (flood, (source, datagrams)) in
        [(garbage_source, garbage_datagrams()), (unfunded_source, unfunded_datagrams())].into_iter().enumerate()
    {
        let (to, stop, counts) = (node.udp_address.clone(), stop.clone(), counts.clone());
        let socket = UdpSocket::bind(&source).unwrap();
        socket.set_nonblocking(true).unwrap();
        handles.push(std::thread::spawn(move || {
            if yielding {
                yield_to_everything();
            }
            let count = &counts.udp_datagrams[flood];
            let mut sink = vec![0u8; wire::DATAGRAM_SIZE_MAX_BYTES];
            while !stop.load(Ordering::Relaxed) {
                for datagram in &datagrams {
                    if socket.send_to(datagram, &to).is_ok() {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    while socket.recv_from(&mut sink).is_ok() {}
                }
            }
        }));
    }
    let (url, stop, counts) = (node.url.clone(), stop.clone(), counts.clone());
    handles.push(std::thread::spawn(move || {
        enter_rpc_side();
        if yielding {
            yield_to_everything();
        }
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
        let (key, oversized) = (DevKey::dev(7), vec![b' '; 6 << 20]);
        for nonce in 100.. {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let raw = format!("0x{}", hex::encode(transfer(&key, nonce)));
            let _ = support::rpc(&agent, &url, "eth_sendRawTransaction", json!([raw]));
            counts.rpc_requests.fetch_add(1, Ordering::Relaxed);
            if nonce % 8 == 0 {
                let _ = agent.post(&url).header("content-type", "application/json").send(&oversized[..]);
                counts.rpc_requests.fetch_add(1, Ordering::Relaxed);
            }
        }
    }));
    handles
}

/// Runs `f` in a thread inside side `side` of `pair` (or here without one).
fn on_side<T: Send>(pair: Option<&VethPair>, side: usize, f: impl FnOnce() -> T + Send) -> T {
    match pair {
        None => f(),
        Some(pair) => std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    pair.enter(side).unwrap();
                    f()
                })
                .join()
                .unwrap()
        }),
    }
}

fn flood(dir: &std::path::Path, af_xdp: bool, phase_seconds: u64) {
    // One fresh funded account per honest transfer, all three phases.
    let genesis = genesis(dir, (3 * HONEST_RATE * phase_seconds) as usize);
    let pair = af_xdp.then(|| {
        let pair = VethPair::create("tprl", AF_XDP_SUBNET).expect("a veth pair between two namespaces (root)");
        for host in [3, 4] {
            let address = format!("10.{AF_XDP_SUBNET}.0.{host}/24");
            let status = std::process::Command::new("ip")
                .args(["-n", &pair.namespaces[1], "addr", "add", &address, "dev", &pair.interfaces[1]])
                .status()
                .unwrap();
            assert!(status.success(), "adding {address} in namespace b");
        }
        pair
    });
    let (config, honest_source, flood_sources) = match &pair {
        None => (
            format!("[udp]\n{FLOOD_UDP_LIMITS}[net]\n{FLOOD_NET_LIMITS}"),
            "127.0.0.1:0".to_string(),
            ["127.0.0.2:0".to_string(), "127.0.0.3:0".to_string()],
        ),
        Some(pair) => (
            format!(
                "[udp]\nlisten = \"{}:9000\"\n{FLOOD_UDP_LIMITS}[net]\nbackend = \"af_xdp\"\n{FLOOD_NET_LIMITS}\
                 [net.af_xdp]\ninterface = \"{}\"\n",
                pair.addresses[0], pair.interfaces[0]
            ),
            format!("{}:0", pair.addresses[1]),
            [format!("10.{AF_XDP_SUBNET}.0.3:0"), format!("10.{AF_XDP_SUBNET}.0.4:0")],
        ),
    };
    let node = on_side(pair.as_ref(), 0, || start_tephra(&dir.join("flood"), &genesis, &config));
    let socket = on_side(pair.as_ref(), 1, || UdpSocket::bind(&honest_source).unwrap());
    let (recorder, stop_listening) = (Recorder::new(), Arc::new(AtomicBool::new(false)));
    let listener = recorder.listen(socket.try_clone().unwrap(), stop_listening.clone());
    let phase = HONEST_RATE * phase_seconds;
    let datagrams: Vec<(u64, Vec<u8>)> = (0..3 * phase)
        .map(|id| {
            let mut datagram = Vec::new();
            wire::encode_request(id, false, &[&transfer(&DevKey::from_seed(id), 0)], &mut datagram);
            (id, datagram)
        })
        .collect();
    let backend = if af_xdp { "af_xdp across a veth pair" } else { "socket on loopback" };
    println!("flood: honest transfers at {HONEST_RATE}/s over UDP ({backend}), {phase_seconds} s per phase");
    let mut phases = datagrams.chunks(phase as usize);
    let unloaded = phases.next().unwrap();
    open_loop(&node, &socket, &recorder, unloaded, HONEST_RATE as f64);
    let p99_unloaded = report("unloaded", &mut recorder.take(), unloaded.len(), &node);
    for (yielding, how) in [
        (false, "flood generators competing with the node for its two cores"),
        (true, "flood generators at SCHED_IDLE: the node's cores serve it first"),
    ] {
        let honest = phases.next().unwrap();
        let stop_floods = Arc::new(AtomicBool::new(false));
        let rpc_side: Box<dyn FnOnce() + Send> = match &pair {
            None => Box::new(|| {}),
            Some(pair) => {
                let namespace = pair.namespaces[0].clone();
                Box::new(move || tephra_dataplane::netns::enter_named(&namespace).unwrap())
            }
        };
        let counts = Arc::new(FloodCounts::default());
        let started = Instant::now();
        let flooders = on_side(pair.as_ref(), 1, || {
            floods(&node, &stop_floods, flood_sources.clone(), rpc_side, yielding, &counts)
        });
        open_loop(&node, &socket, &recorder, honest, HONEST_RATE as f64);
        let p99_flooded = report("flooded", &mut recorder.take(), honest.len(), &node);
        stop_floods.store(true, Ordering::Relaxed);
        flooders.into_iter().for_each(|f| f.join().unwrap());
        let seconds = started.elapsed().as_secs_f64();
        let rate = |count: &AtomicU64| count.load(Ordering::Relaxed) as f64 / seconds;
        println!(
            "    ({how}; floods sent {:.0} garbage and {:.0} unfunded datagrams/s, {:.0} JSON-RPC requests/s)",
            rate(&counts.udp_datagrams[0]),
            rate(&counts.udp_datagrams[1]),
            rate(&counts.rpc_requests)
        );
        let ratio = p99_flooded / p99_unloaded;
        println!(
            "    flooded/unloaded p99: {ratio:.2}x (goal at most 2x: {})",
            if ratio <= 2.0 { "meets" } else { "MISSES" }
        );
    }
    stop_listening.store(true, Ordering::Relaxed);
    listener.join().unwrap();
}

/// Closed loop: each client sends a datagram and waits for its reply.
fn maximum_rate(node: &Peer, keys: &[DevKey], nonces: &mut [u64]) -> f64 {
    let measure = Duration::from_secs(10);
    let preconfirmed = Arc::new(AtomicU64::new(0));
    let per_client = keys.len() / MAX_CLIENTS;
    let mut clients = Vec::new();
    for c in 0..MAX_CLIENTS {
        let keys: Vec<DevKey> = keys[c * per_client..(c + 1) * per_client].to_vec();
        let mut nonces: Vec<u64> = nonces[c * per_client..(c + 1) * per_client].to_vec();
        let (to, preconfirmed) = (node.udp_address.clone(), preconfirmed.clone());
        clients.push(std::thread::spawn(move || {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let (mut request, mut reply) = (Vec::new(), vec![0u8; wire::DATAGRAM_SIZE_MAX_BYTES]);
            let deadline = Instant::now() + measure;
            for id in 0.. {
                if Instant::now() >= deadline {
                    break;
                }
                let k = id as usize % keys.len();
                let txs: Vec<Vec<u8>> =
                    (0..SOAK_TXS_PER_DATAGRAM as u64).map(|i| transfer(&keys[k], nonces[k] + i)).collect();
                let refs: Vec<&[u8]> = txs.iter().map(Vec::as_slice).collect();
                request.clear();
                wire::encode_request(id, false, &refs, &mut request);
                socket.send_to(&request, &to).unwrap();
                let Ok((len, _)) = socket.recv_from(&mut reply) else { continue };
                if let Some((_, Ok(answers))) = wire::decode_reply(&reply[..len]) {
                    let n = answers.iter().filter(|a| matches!(a, TxReply::Preconfirmed { .. })).count();
                    preconfirmed.fetch_add(n as u64, Ordering::Relaxed);
                    nonces[k] += n as u64;
                }
            }
            nonces
        }));
    }
    for (c, client) in clients.into_iter().enumerate() {
        nonces[c * per_client..(c + 1) * per_client].copy_from_slice(&client.join().unwrap());
    }
    preconfirmed.load(Ordering::Relaxed) as f64 / measure.as_secs_f64()
}

fn soak(dir: &std::path::Path, seconds: u64) {
    let genesis = genesis(dir, SOAK_ACCOUNTS as usize);
    let node = start_tephra(&dir.join("soak"), &genesis, SOAK_CONFIG);
    let keys: Vec<DevKey> = (0..SOAK_ACCOUNTS).map(DevKey::from_seed).collect();
    let mut nonces = vec![0u64; keys.len()];
    let max = maximum_rate(&node, &keys, &mut nonces);
    let rate = 0.8 * max;
    println!(
        "soak: maximum sustained {max:.0} tx/s (closed loop, {MAX_CLIENTS} clients); {seconds} s at {rate:.0} tx/s"
    );
    // Transactions are signed ahead by a generator thread, bounded.
    let (signed, to_send) = mpsc::sync_channel::<(u64, Vec<u8>)>(4096);
    let generator = std::thread::spawn(move || {
        for id in 0.. {
            let k = id as usize % keys.len();
            let txs: Vec<Vec<u8>> =
                (0..SOAK_TXS_PER_DATAGRAM as u64).map(|i| transfer(&keys[k], nonces[k] + i)).collect();
            nonces[k] += SOAK_TXS_PER_DATAGRAM as u64;
            let refs: Vec<&[u8]> = txs.iter().map(Vec::as_slice).collect();
            let mut datagram = Vec::new();
            wire::encode_request(id, false, &refs, &mut datagram);
            if signed.send((id, datagram)).is_err() {
                return;
            }
        }
    });
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (recorder, stop) = (Recorder::new(), Arc::new(AtomicBool::new(false)));
    let listener = recorder.listen(socket.try_clone().unwrap(), stop.clone());
    let interval = Duration::from_secs_f64(SOAK_TXS_PER_DATAGRAM as f64 / rate);
    let start = Instant::now();
    let (mut sent, mut window_start, mut windows) = (0u32, start, Vec::new());
    while start.elapsed() < Duration::from_secs(seconds) {
        let scheduled = start + interval * sent;
        if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let (id, datagram) = to_send.recv().unwrap();
        recorder.sent(id, scheduled);
        let _ = socket.send_to(&datagram, &node.udp_address);
        sent += 1;
        if window_start.elapsed() >= SOAK_WINDOW {
            let mut samples = recorder.take();
            samples.sort_by_key(|s| s.1);
            let latencies: Vec<Duration> = samples.iter().map(|s| s.1).collect();
            let txs = recorder.txs_preconfirmed.swap(0, Ordering::Relaxed) as f64;
            let window = (
                start.elapsed().as_secs(),
                txs / window_start.elapsed().as_secs_f64(),
                percentile_ms(&latencies, 500),
                percentile_ms(&latencies, 990),
                node.rss_bytes() >> 20,
            );
            println!(
                "  t {:>4} s   {:>7.0} tx/s   p50 {:>7.2} ms   p99 {:>7.2} ms   rss {} MiB",
                window.0, window.1, window.2, window.3, window.4
            );
            windows.push(window);
            window_start = Instant::now();
        }
    }
    drop(to_send);
    stop.store(true, Ordering::Relaxed);
    listener.join().unwrap();
    let _ = generator.join();
    // The first window warms up; drift is second window to last.
    if let (Some(first), Some(last)) = (windows.get(1), windows.last()) {
        let rss_drift = last.4 as f64 / first.4 as f64 - 1.0;
        println!(
            "  rss {} -> {} MiB ({:+.1}%, goal within 10%: {}); p99 {:.2} -> {:.2} ms",
            first.4,
            last.4,
            100.0 * rss_drift,
            if rss_drift.abs() <= 0.10 { "meets" } else { "MISSES" },
            first.3,
            last.3
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|arg| arg == "--bench") {
        return;
    }
    let dir = tephra_testkit::fresh_dir("reliability-bench");
    let number = |flag: &str| args.iter().position(|a| a == flag).map(|i| args[i + 1].parse::<u64>().unwrap());
    match number("--soak-seconds") {
        Some(seconds) => soak(&dir, seconds),
        None => flood(&dir, args.iter().any(|a| a == "--af-xdp"), number("--phase-seconds").unwrap_or(PHASE_SECONDS)),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
