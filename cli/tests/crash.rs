//! The crash harness: the node runs under JSON-RPC and UDP load and is killed
//! with SIGKILL at seeded random moments, again and again. After every
//! restart: each transaction that got a preconfirmation or a receipt is in the
//! chain at the promised position, a replay of the log from genesis reaches
//! the running chain's state root, and no height was ever signed twice.
//!
//! The seed is printed; `TEPHRA_CRASH_SEED=<seed>` replays the same schedule
//! of kill moments, load shapes and senders.

mod common;

use std::{
    collections::HashSet,
    net::UdpSocket,
    sync::Arc,
    time::{Duration, Instant},
};

use alloy_primitives::hex;
use common::{Promises, TephraNode, check_promises, pending_nonce, raw_transfer, rpc_load};
use serde_json::json;
use tephra_exec::dev::{DevKey, SplitMix64};
use tephra_types::wire::{self, TxReply};

const KILLS: usize = 20;
/// Senders driven over JSON-RPC (eth_sendRawTransactionSync) and over UDP.
const RPC_SENDERS: usize = 4;
const UDP_SENDERS: usize = 2;

/// One sender over UDP, `per_datagram` transfers a datagram, until the node
/// stops answering: each preconfirmation in a reply is a promise.
fn udp_load(address: String, key: DevKey, mut nonce: u64, per_datagram: usize, promised: Promises) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(2000))).unwrap();
    let (mut request, mut reply) = (Vec::new(), vec![0u8; wire::DATAGRAM_SIZE_MAX_BYTES]);
    for id in 0.. {
        let txs: Vec<Vec<u8>> = (0..per_datagram as u64).map(|i| raw_transfer(&key, nonce + i, 2)).collect();
        let refs: Vec<&[u8]> = txs.iter().map(Vec::as_slice).collect();
        request.clear();
        wire::encode_request(id, false, &refs, &mut request);
        if socket.send_to(&request, &address).is_err() {
            return;
        }
        let Ok((len, _)) = socket.recv_from(&mut reply) else { return };
        let Some((reply_id, Ok(answers))) = wire::decode_reply(&reply[..len]) else { return };
        assert_eq!(reply_id, id, "a reply answers its own request");
        for answer in &answers {
            match *answer {
                TxReply::Preconfirmed { hash, block_number, index, .. } => {
                    let mut kept = promised.lock().unwrap();
                    kept.positions.insert(hash, (block_number, u64::from(index)));
                    kept.over_udp += 1;
                    nonce += 1;
                }
                // Busy or expired under load: the sender starts again from the chain.
                TxReply::Rejected { .. } => return,
            }
        }
    }
}

/// No block height signed twice, across every life of the node.
fn check_signed_once(node: &TephraNode) {
    let audit = node.dir.join("data").join("sign-audit.log");
    let (entries, _) = tephra_hsm::verify_audit_log(&audit).expect("the audit log's chain holds");
    let mut heights = HashSet::new();
    for entry in entries.iter().filter(|e| e.payload_type == "sealed_block") {
        assert!(heights.insert(entry.height), "block {} signed twice", entry.height);
    }
    assert!(!heights.is_empty(), "blocks were signed");
}

/// `tephra log verify` from genesis while the node is down: its head and
/// state root.
fn replay_from_genesis(node: &TephraNode) -> (u64, String) {
    let stdout = node.tephra(&["log", "verify"]).unwrap_or_else(|e| panic!("log verify failed: {e}"));
    let head_line = stdout.lines().find(|l| l.starts_with("head ")).expect("a head line");
    let fields: Vec<&str> = head_line.split_whitespace().collect();
    (fields[1].parse().unwrap(), fields[5].to_string())
}

#[test]
fn twenty_seeded_kill_9s_under_rpc_and_udp_load_lose_nothing() {
    let seed = std::env::var("TEPHRA_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos().into()
    });
    eprintln!("crash harness seed {seed} (replay: TEPHRA_CRASH_SEED={seed})");
    let mut rng = SplitMix64(seed);
    // Snapshots every 2 blocks: restarts restore one and replay the tail. The
    // node executes on 2 shards; `tephra log verify` replays sequentially.
    let mut node = TephraNode::start(
        "crash",
        "[block]\nsnapshot_interval_blocks = 2\n[exec]\nshards = 2\n[pool]\nmini_block_wait_ms = 3\n",
    );
    let promised: Promises = Arc::default();
    let mut restored_snapshot = false;
    for kill in 0..KILLS {
        let before = promised.lock().unwrap().positions.len();
        let mut load = Vec::new();
        // Senders rotate over the funded dev accounts, so that some start
        // fresh and some resume their nonce chains.
        for stream in 0..RPC_SENDERS + UDP_SENDERS {
            let key = DevKey::dev((stream + rng.pick(4) * 2) % 10);
            if load.iter().any(|(address, _)| *address == key.address()) {
                continue;
            }
            let nonce = pending_nonce(&node, &key);
            let address = key.address();
            let promised = promised.clone();
            let handle = if stream < RPC_SENDERS {
                let url = node.rpc_url.clone();
                std::thread::spawn(move || rpc_load(url, key, nonce, promised))
            } else {
                let (udp, per_datagram) = (node.udp_address.clone(), 1 + rng.pick(8));
                std::thread::spawn(move || udp_load(udp, key, nonce, per_datagram, promised))
            };
            load.push((address, handle));
        }
        // The kill comes at a random moment once this round's load is flowing.
        let deadline = Instant::now() + Duration::from_secs(30);
        while promised.lock().unwrap().positions.len() == before {
            assert!(Instant::now() < deadline, "round {kill}: the load did not get going");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(rng.below(1500)));
        node.kill9();
        for (_, handle) in load {
            handle.join().expect("a load thread");
        }

        let (head, root) = replay_from_genesis(&node);
        node.spawn();
        let log = std::fs::read_to_string(node.dir.join("node.log")).unwrap();
        let replayed = log.lines().rev().find(|l| l.contains("batch log replayed")).expect("a replay line");
        let from: u64 = replayed
            .split("from_snapshot_block=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no snapshot block in: {replayed}"));
        restored_snapshot |= from > 0;
        let block = node.rpc("eth_getBlockByNumber", json!([format!("{head:#x}"), false]));
        assert_eq!(block["stateRoot"], root, "round {kill}: the restarted chain and the replay from genesis agree");
        let kept = promised.lock().unwrap();
        check_promises(&node, &kept.positions);
        check_signed_once(&node);
        eprintln!("round {kill}: {} promises kept ({} over UDP), head {head}", kept.positions.len(), kept.over_udp);
    }
    assert!(restored_snapshot, "some restart restored a snapshot and replayed only the tail");
    assert!(promised.lock().unwrap().over_udp > 0, "UDP senders were preconfirmed too");
    // The node goes on after all that: a sender's next nonce works.
    let key = DevKey::dev(0);
    let raw = format!("0x{}", hex::encode(raw_transfer(&key, pending_nonce(&node, &key), 1)));
    assert_eq!(node.rpc("eth_sendRawTransactionSync", json!([raw]))["status"], "0x1");
}
