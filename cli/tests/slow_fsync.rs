//! A slow disk: the data dir is a FUSE file system (cli/tests/common/
//! faultfs.py, passthrough) whose every fsync takes 50 ms longer. The node
//! keeps preconfirming, one group commit covering many transactions, and
//! what it preconfirmed survives kill -9. And reads never wait for a
//! mini-block's fsync (the disk holds one). Needs root, /dev/fuse and
//! Debian's python3-fusepy (scripts/deps.sh); skipped with a message otherwise.

mod common;

use std::sync::{Arc, Mutex};

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, U256, hex};
use common::{FuseDisk, TephraNode, quantity};
use serde_json::json;
use tephra_exec::dev::DevKey;
use tephra_testkit::rpc::RpcClient;

const FSYNC_DELAY_MS: u64 = 50;
const SENDERS: usize = 8;
const TXS_PER_SENDER: u64 = 40;

#[test]
fn a_slow_fsync_slows_preconfirmations_but_loses_nothing() {
    let mut node = TephraNode::configure("slow-fsync", "", &[]);
    let Some(disk) = FuseDisk::mount(&node.dir.join("backing"), &node.dir.join("data"), FSYNC_DELAY_MS, None) else {
        return;
    };
    node.spawn();
    let promised: Arc<Mutex<Vec<(String, u64, u64)>>> = Arc::default();
    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let (url, promised) = (node.rpc_url.clone(), promised.clone());
            std::thread::spawn(move || {
                let agent = ureq::Agent::new_with_defaults();
                let key = DevKey::dev(sender);
                for nonce in 0..TXS_PER_SENDER {
                    let tx = key.transfer(31337, nonce, Address::with_last_byte(0xab), U256::from(1));
                    let raw = format!("0x{}", hex::encode(tx.encoded_2718()));
                    let body =
                        json!({"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransactionSync", "params": [raw]});
                    let reply: serde_json::Value =
                        agent.post(&url).send_json(&body).unwrap().body_mut().read_json().unwrap();
                    let receipt = &reply["result"];
                    assert_eq!(receipt["status"], "0x1", "{reply}");
                    promised.lock().unwrap().push((
                        receipt["transactionHash"].as_str().unwrap().to_string(),
                        quantity(&receipt["blockNumber"]),
                        quantity(&receipt["transactionIndex"]),
                    ));
                }
            })
        })
        .collect();
    for sender in senders {
        sender.join().expect("every transfer preconfirmed on the slow disk");
    }
    // The disk really is slow, and one fsync covers many transactions.
    let (syncs, synced_us) = (node.metric("tephra_fsync_time_us_count"), node.metric("tephra_fsync_time_us_sum"));
    assert!(synced_us / syncs >= (FSYNC_DELAY_MS * 1000) as f64, "fsync took {} us on average", synced_us / syncs);
    let total = (SENDERS as u64 * TXS_PER_SENDER) as f64;
    assert!(syncs < total / 2.0, "{syncs} group commits for {total} transactions");
    eprintln!("{total} transfers preconfirmed with {syncs} fsyncs of {:.1} ms on average", synced_us / syncs / 1000.0);

    // What was preconfirmed on the slow disk survives kill -9.
    node.kill9();
    node.spawn();
    let promised = promised.lock().unwrap().clone();
    node.wait_for_block(promised.iter().map(|p| p.1).max().unwrap());
    for (hash, block, index) in &promised {
        let receipt = node.rpc("eth_getTransactionReceipt", json!([hash]));
        assert_eq!((quantity(&receipt["blockNumber"]), quantity(&receipt["transactionIndex"])), (*block, *index));
    }
    node.kill9();
    drop(disk);
}

/// Reads never wait for a mini-block's fsync, and never see it before it is
/// durable. A transfer is cut and executed while the disk holds every fsync:
/// the recipient's balance and the sender's `latest` nonce still answer as
/// before it (the `pending` nonce counts it), while its sender still waits
/// for the preconfirmation; once the disk lets the fsync finish, it is
/// preconfirmed and reads see it.
#[test]
fn reads_during_a_held_fsync_answer_at_once_with_the_durable_state() {
    // No seal (its fsync holds the view's lock) while the disk holds fsyncs.
    let mut node = TephraNode::configure("held-fsync-reads", "[block]\nblock_time_s = 60\n", &[]);
    let control = node.dir.join("fault");
    let Some(disk) = FuseDisk::mount(&node.dir.join("backing"), &node.dir.join("data"), 0, Some(&control)) else {
        return;
    };
    node.spawn();
    let (key, recipient) = (DevKey::dev(3), Address::with_last_byte(0xcd));
    let sender = key.address();
    let raw = format!("0x{}", hex::encode(key.transfer(31337, 0, recipient, U256::from(5)).encoded_2718()));
    std::fs::write(&control, "hang-sync").unwrap();
    let sending = {
        let url = node.rpc_url.clone();
        std::thread::spawn(move || {
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransactionSync", "params": [raw]});
            let reply: serde_json::Value =
                ureq::Agent::new_with_defaults().post(&url).send_json(&body).unwrap().body_mut().read_json().unwrap();
            reply
        })
    };
    // Admitted, then cut and executed: the pool is empty again, and the
    // mini-block's fsync is held.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while node.metric("tephra_tx_accepted_total") < 1.0 || node.metric("tephra_pool_size") > 0.0 {
        assert!(std::time::Instant::now() < deadline, "the transfer was never executed");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // A read that waited for the held fsync would time out here.
    let reads = RpcClient::new(&node.rpc_url).timeout(std::time::Duration::from_secs(10));
    assert_eq!(reads.rpc("eth_getBalance", json!([recipient, "latest"])), json!("0x0"));
    assert_eq!(reads.rpc("eth_getTransactionCount", json!([sender, "latest"])), json!("0x0"));
    assert_eq!(reads.rpc("eth_getTransactionCount", json!([sender, "pending"])), json!("0x1"));
    assert!(!sending.is_finished(), "preconfirmed while its fsync was held");
    std::fs::write(&control, "").unwrap();
    let reply = sending.join().unwrap();
    assert_eq!(reply["result"]["status"], "0x1", "{reply}");
    assert_eq!(node.rpc("eth_getBalance", json!([recipient, "latest"])), json!("0x5"));
    assert_eq!(node.rpc("eth_getTransactionCount", json!([sender, "latest"])), json!("0x1"));
    node.kill9();
    drop(disk);
}
