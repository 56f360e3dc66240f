//! kill -9 while transactions stream in: every transaction that got a
//! preconfirmation is in the chain afterwards at the promised position, and
//! the chain equals a replay of the log from genesis.

mod common;

use std::{
    collections::HashMap,
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, U256, hex};
use common::{TephraNode, quantity};
use serde_json::{Value, json};
use tephra_exec::dev::DevKey;

const SENDERS: usize = 8;
const TXS_PER_SENDER: usize = 1_000;

fn raw_transfer(key: &DevKey, nonce: u64) -> String {
    let tx = key.transfer(31337, nonce, Address::with_last_byte(0xee), U256::from(1));
    format!("0x{}", hex::encode(tx.encoded_2718()))
}

#[test]
fn preconfirmed_transactions_survive_kill_9_at_their_positions() {
    // Snapshots every 4 blocks: the restart restores one and replays the tail.
    // The node executes on 2 shards; `tephra log verify` replays sequentially.
    let mut node = TephraNode::start(
        "crash",
        "[block]\nblock_time_ms = 50\nsnapshot_interval_blocks = 4\n[exec]\nshards = 2\n[pool]\nmini_block_wait_ms = 3\n",
    );
    let promised: Arc<Mutex<HashMap<String, (u64, u64)>>> = Arc::default();
    let url = node.rpc_url.clone();
    let streams: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let (promised, url) = (promised.clone(), url.clone());
            std::thread::spawn(move || {
                let key = DevKey::dev(sender);
                let agent = ureq::Agent::new_with_defaults();
                for nonce in 0..TXS_PER_SENDER as u64 {
                    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransactionSync",
                        "params": [raw_transfer(&key, nonce), 5000]});
                    let Ok(mut response) = agent.post(&url).send_json(&body) else { return };
                    let Ok(reply) = response.body_mut().read_json::<Value>() else { return };
                    let receipt = &reply["result"];
                    if receipt.is_null() {
                        return;
                    }
                    let at = (quantity(&receipt["blockNumber"]), quantity(&receipt["transactionIndex"]));
                    promised.lock().unwrap().insert(receipt["transactionHash"].as_str().unwrap().to_string(), at);
                }
            })
        })
        .collect();
    // Kill mid-stream, once a good share has been preconfirmed and a snapshot taken.
    let deadline = Instant::now() + Duration::from_secs(60);
    while promised.lock().unwrap().len() < SENDERS * TXS_PER_SENDER / 4
        || quantity(&node.rpc("eth_blockNumber", json!([]))) < 6
    {
        assert!(Instant::now() < deadline, "the stream did not get going");
        std::thread::sleep(Duration::from_millis(5));
    }
    let metrics = node.metrics();
    let speculated = metrics
        .lines()
        .find_map(|line| line.strip_prefix("tephra_exec_speculated_txs_total "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no speculation counter in {metrics}"));
    assert!(speculated > 0, "the 8 streams' mini-blocks run on the shards");
    node.kill9();
    for stream in streams {
        stream.join().unwrap();
    }
    let promised = promised.lock().unwrap().clone();
    assert!(!promised.is_empty());

    node.spawn();
    let log = std::fs::read_to_string(node.dir.join("node.log")).unwrap();
    let replayed = log.lines().rev().find(|l| l.contains("batch log replayed")).expect("a replay line");
    let from: u64 = replayed
        .split("from_snapshot_block=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no snapshot block in: {replayed}"));
    assert!(from > 0, "the restart restores a snapshot: {replayed}");
    let last_block = promised.values().map(|at| at.0).max().unwrap();
    node.wait_for_block(last_block);
    for (hash, (block, index)) in &promised {
        let receipt = node.rpc("eth_getTransactionReceipt", json!([hash]));
        assert!(!receipt.is_null(), "preconfirmed {hash} lost in the crash");
        assert_eq!(
            (quantity(&receipt["blockNumber"]), quantity(&receipt["transactionIndex"])),
            (*block, *index),
            "{hash} moved"
        );
        assert_eq!(receipt["status"], "0x1");
    }
    // The node keeps going after the crash: the senders' next nonces work.
    let next_nonce = quantity(&node.rpc("eth_getTransactionCount", json!([DevKey::dev(0).address(), "pending"])));
    let receipt = node.rpc("eth_sendRawTransactionSync", json!([raw_transfer(&DevKey::dev(0), next_nonce)]));
    assert_eq!(receipt["status"], "0x1");
    node.stop();

    // A replay of the whole log from genesis reaches the same chain.
    let output = Command::new(env!("CARGO_BIN_EXE_tephra"))
        .args(["log", "verify", "--config", node.config.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "log verify failed: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    let head_line = stdout.lines().find(|l| l.starts_with("head ")).expect("a head line");
    let fields: Vec<&str> = head_line.split_whitespace().collect();
    let (head, root) = (fields[1].parse::<u64>().unwrap(), fields[5].to_string());
    node.spawn();
    let block = node.rpc("eth_getBlockByNumber", json!([format!("{head:#x}"), false]));
    assert_eq!(block["stateRoot"], root, "the running chain and the replay from genesis agree");
}
