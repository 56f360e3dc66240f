//! High availability end to end: two `tephra` processes and a real 3-member
//! etcd cluster on loopback (etcd from Debian, scripts/deps.sh).
//!
//! - Seeded failovers under JSON-RPC load, by kill -9, SIGSTOP (a leader
//!   that wakes up deposed), step-down and SIGTERM: a standby leads within
//!   two lease TTLs, no preconfirmed transaction is lost (sync replication),
//!   the two chains never fork, no height is signed with two block hashes
//!   across both nodes' audit logs, every block carries a newer epoch than the
//!   last leader's, and after each round the rejoined node's log replays from
//!   genesis to the leader's chain.
//! - A leader cut off from etcd (the one member it talks to stopped, the
//!   other two a quorum) stops within its lease; the new leader's blocks
//!   carry a higher epoch; a signature request with the stale epoch is
//!   refused by the guard through the node's etcd fence.
//! - A standby whose link to the leader is too slow to catch up (a proxy
//!   that starves it) does not lead when the leader dies; the caught-up node
//!   does when it returns.
//! - Async replication: kill -9 failovers lose at most the newest
//!   preconfirmations, never fork and never sign a height twice; a standby
//!   that lacks blocks a leader signed (it was down meanwhile) does not lead
//!   until a node that holds them does and it has caught up.
//! - An old leader that preconfirmed (async) and sealed what its standby
//!   never received (the link starved, the standby frozen) and died before
//!   signing it rejoins under the new leader: it truncates those records,
//!   and its chain is the new leader's, the lost transactions absent from
//!   both.
//!
//! The seed is printed; `TEPHRA_HA_SEED=<seed>` replays the same schedule.

mod common;

use std::{
    collections::{HashMap, HashSet},
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use alloy_primitives::B256;
use common::{Promises, TephraNode, free_port, pending_nonce, quantity, rpc_load};
use serde_json::{Value, json};
use tephra_exec::dev::{DevKey, SplitMix64};
use tephra_testkit::etcd::EtcdCluster;

const LEASE_TTL: Duration = Duration::from_secs(2);
const FAILOVERS: usize = 11;
const BLOCK_KEY: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const SECRET: &str = "a shared secret of the pair, at least 32 bytes long";

/// A TCP forwarder that starves its clients: on each connection it passes
/// at most `budget` bytes from the target, then reads no more (TCP holds the
/// rest back), as a link too slow to keep up would; raising the budget lets
/// the rest through.
struct Proxy {
    address: SocketAddr,
    budget: Arc<AtomicU64>,
}

fn pump(mut from: TcpStream, mut to: TcpStream, budget: Option<Arc<AtomicU64>>) {
    let mut buffer = [0u8; 16 * 1024];
    let mut passed = 0u64;
    loop {
        let allowed = match &budget {
            Some(budget) => {
                let left = budget.load(Ordering::Acquire).saturating_sub(passed);
                if left == 0 {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                buffer.len().min(usize::try_from(left).unwrap_or(usize::MAX))
            }
            None => buffer.len(),
        };
        match from.read(&mut buffer[..allowed]) {
            Ok(0) | Err(_) => return,
            Ok(n) if to.write_all(&buffer[..n]).is_err() => return,
            Ok(n) => passed += n as u64,
        }
    }
}

impl Proxy {
    fn to(target: SocketAddr, budget: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let budget = Arc::new(AtomicU64::new(budget));
        let shared = budget.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(upstream) = TcpStream::connect(target) else { continue };
                let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                let shared = shared.clone();
                std::thread::spawn(move || pump(client, upstream, None));
                std::thread::spawn(move || pump(u2, c2, Some(shared)));
            }
        });
        Self { address, budget }
    }
}

/// The node's config file, as a table to edit.
fn edit_config(node: &TephraNode, edit: impl FnOnce(&mut toml::Table)) {
    let mut table: toml::Table = std::fs::read_to_string(&node.config).unwrap().parse().unwrap();
    edit(&mut table);
    std::fs::write(&node.config, toml::to_string(&table).unwrap()).unwrap();
}

/// Makes `leader` advertise, for replication, a proxy to its listen address
/// that passes `budget` bytes towards its standbys.
fn standbys_through_proxy(leader: &TephraNode, budget: u64) -> Proxy {
    let mut proxy = None;
    edit_config(leader, |table| {
        let ha = table["ha"].as_table_mut().unwrap();
        let listen: SocketAddr = ha["replication_listen"].as_str().unwrap().parse().unwrap();
        let link = Proxy::to(listen, budget);
        ha.insert("replication_advertise".into(), toml::Value::String(link.address.to_string()));
        proxy = Some(link);
    });
    proxy.expect("the config was edited")
}

/// A pair member's config: its id, its peer, the etcd endpoints it uses,
/// and more `[ha]` lines.
fn member(name: &str, id: &str, peer: &str, endpoints: &[String], prefix: &str, mode: &str, ha: &str) -> TephraNode {
    let endpoints: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    let extra = format!(
        "[pool]\nmini_block_wait_ms = 2\n[ha]\nenabled = true\nnode_id = \"{id}\"\n\
         peers = [\"{peer}\"]\netcd_endpoints = [{}]\netcd_prefix = \"{prefix}\"\nlease_ttl_s = {}\n\
         replication = \"{mode}\"\nreplication_listen = \"127.0.0.1:{}\"\n{ha}",
        endpoints.join(", "),
        LEASE_TTL.as_secs(),
        free_port()
    );
    let node = TephraNode::configure(&format!("{name}-{id}"), &extra, &[]);
    std::fs::create_dir_all(node.dir.join("data")).unwrap();
    std::fs::write(node.dir.join("data").join("ha.secret"), SECRET).unwrap();
    // One block key for the pair (in production: one network HSM, or the
    // same key imported into each member's).
    std::fs::write(node.dir.join("data").join("block.key"), BLOCK_KEY).unwrap();
    node
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_millis(500)))
        .build()
        .new_agent()
}

/// The node's HA role (2 leader, 1 standby), or `None` if it does not answer.
fn role(node: &TephraNode) -> Option<u64> {
    let mut response = agent().get(format!("{}/metrics", node.metrics_url)).call().ok()?;
    let text = response.body_mut().read_to_string().ok()?;
    text.lines().find_map(|l| l.strip_prefix("tephra_ha_role ")).and_then(|v| v.trim().parse().ok())
}

/// Waits for a node other than `not` to lead: its index.
fn wait_leader(nodes: &[TephraNode], not: Option<usize>, wait: Duration) -> usize {
    let deadline = Instant::now() + wait;
    loop {
        for (i, node) in nodes.iter().enumerate() {
            if Some(i) != not && role(node) == Some(2) {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no new leader within {wait:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn head(node: &TephraNode) -> u64 {
    quantity(&node.rpc("eth_blockNumber", json!([])))
}

/// The epoch a block carries: the first 8 bytes of its extra data.
fn block_epoch(block: &Value) -> u64 {
    let extra = block["extraData"].as_str().unwrap().trim_start_matches("0x");
    u64::from_str_radix(&extra[..16], 16).unwrap()
}

fn block(node: &TephraNode, number: u64) -> Value {
    node.rpc("eth_getBlockByNumber", json!([format!("{number:#x}"), false]))
}

/// Waits until `standby` holds `leader`'s head at the time of the call.
fn wait_caught_up(standby: &TephraNode, leader: &TephraNode) {
    let target = head(leader);
    let deadline = Instant::now() + Duration::from_secs(30);
    while head(standby) < target {
        assert!(Instant::now() < deadline, "the standby did not catch up to block {target}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The two chains agree block by block up to the lower head.
fn check_no_fork(a: &TephraNode, b: &TephraNode) {
    let top = head(a).min(head(b));
    for number in 1..=top {
        assert_eq!(block(a, number)["hash"], block(b, number)["hash"], "the chains fork at block {number}");
    }
}

/// Across both nodes' audit logs, no height was signed with two block hashes.
fn check_signed_once(nodes: &[TephraNode]) -> usize {
    let mut signed: HashMap<u64, HashSet<B256>> = HashMap::new();
    for node in nodes {
        let audit = node.dir.join("data").join("sign-audit.log");
        if !audit.exists() {
            continue;
        }
        let (entries, _) = tephra_hsm::verify_audit_log(&audit).expect("the audit log's chain holds");
        for entry in entries.iter().filter(|e| e.payload_type == "sealed_block") {
            signed.entry(entry.height).or_default().insert(entry.payload_hash);
        }
    }
    for (height, hashes) in &signed {
        assert_eq!(hashes.len(), 1, "height {height} signed with {} different block hashes", hashes.len());
    }
    signed.len()
}

/// Stops the standby, replays its log from genesis, checks the result is the
/// leader's block at that height, and starts it again.
fn check_replay_equals_chain(standby: &mut TephraNode, leader: &TephraNode) {
    standby.stop();
    let stdout = standby.tephra(&["log", "verify"]).unwrap_or_else(|e| panic!("log verify failed: {e}"));
    let line = stdout.lines().find(|l| l.starts_with("head ")).expect("a head line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    let number: u64 = fields[1].parse().unwrap();
    let chain = block(leader, number);
    assert_eq!((fields[2], fields[5]), (chain["hash"].as_str().unwrap(), chain["stateRoot"].as_str().unwrap()));
    standby.spawn();
}

#[derive(Clone, Copy, Debug)]
enum Failover {
    Kill9,
    /// SIGSTOP past the lease, then SIGCONT: the old leader wakes deposed.
    Pause,
    StepDown,
    Terminate,
}

/// The seed from `TEPHRA_HA_SEED`, or a fresh one; printed for replay.
fn seed(test: &str) -> u64 {
    let seed = std::env::var("TEPHRA_HA_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos().into()
    });
    eprintln!("{test} seed {seed} (replay: TEPHRA_HA_SEED={seed})");
    seed
}

/// `rounds` failovers under JSON-RPC load, each of a kind `pick` chooses,
/// checked after each (see the file's comment). With `lossless` (sync
/// replication) every preconfirmation must survive; otherwise the lost
/// ones are counted and dropped from the promises. The new leader's index,
/// and how many preconfirmations were lost.
fn failover_rounds(
    nodes: &mut [TephraNode; 2],
    mut leader: usize,
    rounds: usize,
    lossless: bool,
    mut pick: impl FnMut(usize) -> Failover,
    rng: &mut SplitMix64,
) -> (usize, usize) {
    let promised: Promises = Arc::default();
    let (mut last_epoch, mut lost_total) = (0, 0);
    for round in 0..rounds {
        let before = promised.lock().unwrap().positions.len();
        let load: Vec<_> = (0..2)
            .map(|stream| {
                let key = DevKey::dev((round * 2 + stream) % 10);
                let nonce = pending_nonce(&nodes[leader], &key);
                let (url, promised) = (nodes[leader].rpc_url.clone(), promised.clone());
                std::thread::spawn(move || rpc_load(url, key, nonce, promised))
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while promised.lock().unwrap().positions.len() == before {
            assert!(Instant::now() < deadline, "round {round}: the load did not get going");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.below(800)));
        let kind = pick(round);
        let standby = 1 - leader;
        let started = Instant::now();
        match kind {
            Failover::Kill9 => nodes[leader].kill9(),
            Failover::Pause => nodes[leader].signal("STOP"),
            Failover::StepDown => {
                nodes[standby].tephra(&["ha", "step-down"]).unwrap();
            }
            Failover::Terminate => nodes[leader].stop(),
        }
        let next = wait_leader(nodes, Some(leader), 2 * LEASE_TTL + Duration::from_secs(3));
        let took = started.elapsed();
        eprintln!("round {round}: {kind:?}, {} leads after {} ms", ["a", "b"][next], took.as_millis());
        if matches!(kind, Failover::Kill9 | Failover::Pause) {
            assert!(took <= 2 * LEASE_TTL, "round {round}: failover took {took:?}, above two lease TTLs");
        }
        match kind {
            Failover::Pause => {
                nodes[leader].signal("CONT");
                let status = nodes[leader].wait_exit(Duration::from_secs(10)).expect("the paused leader exits");
                assert!(!status.success(), "a deposed leader exits failed, to be restarted");
            }
            Failover::StepDown => {
                let status = nodes[leader].wait_exit(Duration::from_secs(10)).expect("the stepped-down leader exits");
                assert!(!status.success());
            }
            Failover::Kill9 | Failover::Terminate => {}
        }
        for thread in load {
            thread.join().expect("a load thread");
        }
        // The old leader comes back as a standby of the new one.
        nodes[leader].spawn();
        assert_eq!(role(&nodes[leader]), Some(1), "round {round}: the old leader rejoins as a standby");
        let new_block = {
            let number = head(&nodes[next]) + 1;
            nodes[next].wait_for_block(number);
            block(&nodes[next], number)
        };
        let epoch = block_epoch(&new_block);
        assert!(
            epoch > last_epoch,
            "round {round}: the new leader's blocks carry a newer epoch ({epoch} after {last_epoch})"
        );
        last_epoch = epoch;
        {
            let mut promised = promised.lock().unwrap();
            let lost = common::lost_promises(&nodes[next], &promised.positions);
            assert!(!lossless || lost.is_empty(), "round {round}: preconfirmed {lost:?} lost in the failover");
            for hash in &lost {
                promised.positions.remove(hash);
            }
            lost_total += lost.len();
        }
        wait_caught_up(&nodes[leader], &nodes[next]);
        check_no_fork(&nodes[0], &nodes[1]);
        let heights = check_signed_once(nodes);
        let (leader_node, standby_node) = if next == 0 {
            let (a, b) = nodes.split_at_mut(1);
            (&a[0], &mut b[0])
        } else {
            let (a, b) = nodes.split_at_mut(1);
            (&b[0], &mut a[0])
        };
        check_replay_equals_chain(standby_node, leader_node);
        eprintln!(
            "round {round}: {} promises kept, {lost_total} lost so far, {heights} heights signed once, epoch {epoch}",
            promised.lock().unwrap().positions.len()
        );
        leader = next;
    }
    (leader, lost_total)
}

#[test]
fn seeded_failovers_under_load_lose_no_preconfirmation_and_never_fork() {
    let Some(etcd) = EtcdCluster::start("failover", 3, None) else { return };
    let mut rng = SplitMix64(seed("ha failover"));
    let endpoints = etcd.endpoints();
    let mut nodes = [
        member("failover", "a", "b", &endpoints, "/tephra/test-failover", "sync", ""),
        member("failover", "b", "a", &endpoints, "/tephra/test-failover", "sync", ""),
    ];
    nodes[0].spawn();
    nodes[1].spawn();
    let leader = wait_leader(&nodes, None, Duration::from_secs(20));
    let mut kinds = SplitMix64(rng.next_u64());
    let pick = |round| match (round, kinds.pick(4)) {
        (0, _) | (_, 0) => Failover::Kill9,
        (_, 1) => Failover::Pause,
        (_, 2) => Failover::StepDown,
        _ => Failover::Terminate,
    };
    let (leader, _) = failover_rounds(&mut nodes, leader, FAILOVERS, true, pick, &mut rng);
    // The standby serves reads and refuses transactions with the leader's address.
    let standby = &nodes[1 - leader];
    let key = DevKey::dev(0);
    let raw =
        format!("0x{}", alloy_primitives::hex::encode(common::raw_transfer(&key, pending_nonce(standby, &key), 1)));
    let error = standby.call("eth_sendRawTransaction", json!([raw])).unwrap_err();
    assert!(error.to_string().contains("standby"), "{error}");
    assert!(error.to_string().contains(&nodes[leader].rpc_url), "{error}");
    let status = nodes[leader].tephra(&["ha", "status"]).unwrap();
    assert!(status.contains(&format!("leader  {}", ["a", "b"][leader])), "{status}");
}

/// Whether the node's block `number` carries its signature.
fn signed(node: &TephraNode, number: u64) -> bool {
    block(node, number)["signature"].is_string()
}

#[test]
fn an_async_pair_fails_over_without_double_signing_and_a_standby_lacking_signed_blocks_waits() {
    let Some(etcd) = EtcdCluster::start("async", 3, None) else { return };
    let mut rng = SplitMix64(seed("ha async"));
    let endpoints = etcd.endpoints();
    let prefix = "/tephra/test-async";
    // The lag gate off: the signed-height gate alone holds the standby back.
    let lagging = "campaign_lag_records_max = 1000000000\nsync_ack_timeout_ms = 200\n";
    let mut nodes = [
        member("async", "a", "b", &endpoints, prefix, "async", lagging),
        member("async", "b", "a", &endpoints, prefix, "async", lagging),
    ];
    nodes[0].spawn();
    nodes[1].spawn();
    let leader = wait_leader(&nodes, None, Duration::from_secs(20));
    // Async kill -9 failovers: the tail of preconfirmations may be lost,
    // never a signed block; no fork, no height signed twice.
    let (leader, lost) = failover_rounds(&mut nodes, leader, 3, false, |_| Failover::Kill9, &mut rng);
    eprintln!("async failovers: {lost} preconfirmations lost");

    // The standby dies; the leader goes on alone and signs blocks the
    // standby never receives; then the leader dies too.
    let standby = 1 - leader;
    wait_caught_up(&nodes[standby], &nodes[leader]);
    nodes[standby].kill9();
    let held = head(&nodes[leader]);
    let key = DevKey::dev(3);
    let nonce = pending_nonce(&nodes[leader], &key);
    let mut last = 0;
    for i in 0..5 {
        let raw = format!("0x{}", alloy_primitives::hex::encode(common::raw_transfer(&key, nonce + i, 1)));
        last = quantity(&nodes[leader].rpc("eth_sendRawTransactionSync", json!([raw]))["blockNumber"]);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(head(&nodes[leader]) >= last && signed(&nodes[leader], last)) {
        assert!(Instant::now() < deadline, "the lone leader did not sign block {last}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(last > held);
    nodes[leader].kill9();
    nodes[standby].spawn();

    // The standby lacks signed blocks: it must not lead.
    let waited = Instant::now();
    while waited.elapsed() < 3 * LEASE_TTL {
        assert_ne!(role(&nodes[standby]), Some(2), "a standby lacking signed blocks took over");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(nodes[standby].dir.join("node.log")).unwrap();
    assert!(log.contains("waiting for a node that holds them"), "the standby says why it waits");
    let status = nodes[standby].tephra(&["ha", "status"]).unwrap();
    assert!(status.contains("leader  none"), "{status}");
    let signed_height: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("signed  up to block "))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no signed height in {status}"));
    assert!(signed_height >= last && signed_height > head(&nodes[standby]), "{status}");

    // The node that holds them comes back, leads, and the standby catches up.
    nodes[leader].spawn();
    assert_eq!(wait_leader(&nodes, Some(standby), 2 * LEASE_TTL + Duration::from_secs(3)), leader);
    nodes[leader].wait_for_block(last + 1);
    wait_caught_up(&nodes[standby], &nodes[leader]);
    assert_eq!(block(&nodes[standby], last)["hash"], block(&nodes[leader], last)["hash"]);
    check_no_fork(&nodes[0], &nodes[1]);
    check_signed_once(&nodes);
}

#[test]
fn an_old_leader_truncates_what_it_sealed_but_never_replicated() {
    let Some(etcd) = EtcdCluster::start("truncate", 3, None) else { return };
    let endpoints = etcd.endpoints();
    let prefix = "/tephra/test-truncate";
    // The lag gate off, and a signature waits long for a connected standby:
    // what a seals while b hears nothing stays unsigned.
    let ha = "campaign_lag_records_max = 1000000000\nsync_ack_timeout_ms = 30000\n";
    let mut nodes = [
        member("truncate", "a", "b", &endpoints, prefix, "async", ha),
        member("truncate", "b", "a", &endpoints, prefix, "async", ha),
    ];
    // b reaches a through a proxy that passes everything until told not to.
    let proxy = standbys_through_proxy(&nodes[0], u64::MAX);
    nodes[0].spawn();
    assert_eq!(wait_leader(&nodes, None, Duration::from_secs(20)), 0);
    nodes[1].spawn();
    let key = DevKey::dev(4);
    let send = |node: &TephraNode, nonce: u64| {
        let raw = format!("0x{}", alloy_primitives::hex::encode(common::raw_transfer(&key, nonce, 1)));
        let receipt = node.rpc("eth_sendRawTransactionSync", json!([raw]));
        (receipt["transactionHash"].as_str().unwrap().to_string(), quantity(&receipt["blockNumber"]))
    };
    for nonce in 0..3 {
        send(&nodes[0], nonce);
    }
    wait_caught_up(&nodes[1], &nodes[0]);

    // Nothing more reaches b (a read in flight passes one heartbeat), and b
    // freezes before it could notice the silence and hang up: a still sees
    // its standby connected and waits for it before signing.
    proxy.budget.store(0, Ordering::Release);
    std::thread::sleep(Duration::from_millis(300));
    let replicated = head(&nodes[1]);
    nodes[1].signal("STOP");
    let unreplicated: Vec<(String, u64)> = (3..8).map(|nonce| send(&nodes[0], nonce)).collect();
    let last = unreplicated.last().unwrap().1;
    // Preconfirmed and durable on a alone; its sealing waits on the signature
    // of a block b does not hold, so nothing past `replicated` is signed.
    let sealed = head(&nodes[0]);
    assert!((replicated + 1..=sealed).all(|number| !signed(&nodes[0], number)), "signed before b held it");
    nodes[0].kill9();
    nodes[1].signal("CONT");

    // b holds every signed block, so it leads, from its own head.
    assert_eq!(wait_leader(&nodes, Some(0), 2 * LEASE_TTL + Duration::from_secs(3)), 1);
    nodes[1].wait_for_block(last + 1);
    nodes[0].spawn();
    assert_eq!(role(&nodes[0]), Some(1));
    wait_caught_up(&nodes[0], &nodes[1]);
    let log = std::fs::read_to_string(nodes[0].dir.join("node.log")).unwrap();
    assert!(log.contains("batch log truncated to what the leader holds"), "the old leader truncates its log");
    let lost: Vec<&String> = unreplicated
        .iter()
        .map(|(hash, _)| hash)
        .filter(|hash| nodes[1].rpc("eth_getTransactionReceipt", json!([hash])).is_null())
        .collect();
    eprintln!(
        "{} of {} unreplicated transactions lost; b held block {replicated}, a had sealed {sealed}",
        lost.len(),
        unreplicated.len()
    );
    assert!(!lost.is_empty(), "b cannot hold what never reached it");
    for hash in &lost {
        assert!(nodes[0].rpc("eth_getTransactionReceipt", json!([hash])).is_null(), "{hash} survived the truncation");
    }
    assert_eq!(block(&nodes[0], last)["hash"], block(&nodes[1], last)["hash"]);
    check_no_fork(&nodes[0], &nodes[1]);
    check_signed_once(&nodes);
}

#[test]
fn a_standby_behind_the_leader_does_not_campaign_until_it_has_caught_up() {
    let Some(etcd) = EtcdCluster::start("lag", 3, None) else { return };
    let endpoints = etcd.endpoints();
    let prefix = "/tephra/test-lag";
    let ha = "campaign_lag_records_max = 5\nsync_ack_timeout_ms = 200\n";
    let mut nodes = [
        member("lag", "a", "b", &endpoints, prefix, "async", ha),
        member("lag", "b", "a", &endpoints, prefix, "async", ha),
    ];
    // Standbys reach a through a proxy that passes the handshake and the
    // start message (under 200 bytes), then starves them.
    let proxy = standbys_through_proxy(&nodes[0], 512);
    nodes[0].spawn();
    assert_eq!(wait_leader(&nodes, None, Duration::from_secs(20)), 0);
    let key = DevKey::dev(2);
    for nonce in 0..100 {
        let raw = format!("0x{}", alloy_primitives::hex::encode(common::raw_transfer(&key, nonce, 1)));
        assert_eq!(nodes[0].rpc("eth_sendRawTransactionSync", json!([raw]))["status"], "0x1");
    }
    // b joins; the leader's start message says how far behind it is, and
    // the records themselves never get through.
    nodes[1].spawn();
    assert_eq!(role(&nodes[1]), Some(1));
    nodes[0].kill9();
    let waited = Instant::now();
    while waited.elapsed() < 3 * LEASE_TTL {
        assert_ne!(role(&nodes[1]), Some(2), "a standby that is behind took over");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(nodes[1].dir.join("node.log")).unwrap();
    assert!(log.contains("records behind the leader when last heard"), "the standby says why it waits");
    assert!(nodes[1].tephra(&["ha", "status"]).unwrap().contains("leader  none"));

    // The caught-up node comes back and leads; the standby catches up.
    proxy.budget.store(u64::MAX, Ordering::Release);
    nodes[0].spawn();
    assert_eq!(wait_leader(&nodes, Some(1), 2 * LEASE_TTL + Duration::from_secs(3)), 0);
    wait_caught_up(&nodes[1], &nodes[0]);
    check_no_fork(&nodes[0], &nodes[1]);
    check_signed_once(&nodes);
}

#[test]
fn a_leader_cut_off_from_etcd_stops_and_its_stale_epoch_gets_no_signature() {
    let Some(etcd) = EtcdCluster::start("partition", 3, None) else { return };
    // The leader reaches etcd through member 0 alone, the standby through
    // the other two: stopping member 0 cuts the leader off and leaves a
    // quorum.
    let endpoints = etcd.endpoints();
    let prefix = "/tephra/test-partition";
    let mut nodes = [
        member("partition", "a", "b", &endpoints[..1], prefix, "sync", ""),
        member("partition", "b", "a", &endpoints[1..], prefix, "sync", ""),
    ];
    nodes[0].spawn();
    assert_eq!(wait_leader(&nodes, None, Duration::from_secs(20)), 0);
    nodes[1].spawn();
    let key = DevKey::dev(1);
    let mut last_receipt = Value::Null;
    for nonce in 0..5 {
        let raw = format!("0x{}", alloy_primitives::hex::encode(common::raw_transfer(&key, nonce, 1)));
        last_receipt = nodes[0].rpc("eth_sendRawTransactionSync", json!([raw]));
        assert_eq!(last_receipt["status"], "0x1");
    }
    // A preconfirmation comes before its block is sealed: wait for the seal.
    let sealed = quantity(&last_receipt["blockNumber"]);
    nodes[0].wait_for_block(sealed);
    let stale_epoch = block_epoch(&block(&nodes[0], sealed));
    assert!(stale_epoch > 0);

    let cut = Instant::now();
    etcd.signal(0, "STOP");
    let status = nodes[0].wait_exit(LEASE_TTL + Duration::from_secs(2)).expect("the cut-off leader stops");
    let stopped = cut.elapsed();
    eprintln!("the cut-off leader stopped {} ms after the partition", stopped.as_millis());
    assert!(!status.success());
    assert!(stopped <= LEASE_TTL + Duration::from_millis(500), "stopped after {stopped:?}");
    let log = std::fs::read_to_string(nodes[0].dir.join("node.log")).unwrap();
    assert!(log.contains("leadership lost"), "the node says why it stopped");

    assert_eq!(wait_leader(&nodes, Some(0), 2 * LEASE_TTL + Duration::from_secs(2)), 1);
    // Healed, the old leader rejoins as a standby (a sync leader seals only
    // what a standby holds).
    etcd.signal(0, "CONT");
    nodes[0].spawn();
    assert_eq!(role(&nodes[0]), Some(1));
    let number = head(&nodes[1]) + 1;
    nodes[1].wait_for_block(number);
    let new_epoch = block_epoch(&block(&nodes[1], number));
    assert!(new_epoch > stale_epoch, "the new leader's blocks carry a higher epoch");

    // The guard, through the node's etcd fence, refuses the stale epoch.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = tephra_node::config::Config::load(Some(&nodes[1].config)).unwrap();
    let election = runtime.block_on(tephra_ha::Election::connect(config.ha.etcd())).unwrap();
    let fence = Arc::new(tephra_node::ha::NodeFence::new(election, runtime.handle().clone(), Duration::from_secs(1)));
    let guard_dir = nodes[1].dir.join("fence-check");
    std::fs::create_dir_all(&guard_dir).unwrap();
    let signer = tephra_hsm::GuardedSigner::new(
        tephra_hsm::FileSigner::from_bytes(&[7; 32]).unwrap(),
        tephra_hsm::SignGuard::open(&guard_dir.join("guard")).unwrap(),
    )
    .with_fence(fence);
    let payload = |leader_epoch| tephra_hsm::Payload::SealedBlock {
        chain_id: 31337,
        number: 1_000,
        block_hash: B256::repeat_byte(9),
        leader_epoch,
    };
    let refused = tephra_hsm::Signer::sign(&signer, &payload(stale_epoch)).unwrap_err();
    assert!(refused.to_string().contains("stale epoch"), "{refused}");
    tephra_hsm::Signer::sign(&signer, &payload(new_epoch)).expect("the current epoch signs");

    wait_caught_up(&nodes[0], &nodes[1]);
    check_no_fork(&nodes[0], &nodes[1]);
    check_signed_once(&nodes);
}
