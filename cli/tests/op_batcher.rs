//! The batcher end to end, checked by code that is not tephra's: tephra
//! posts its blocks to a real L1 (anvil) as span batches signed by a batcher
//! key in a real PKCS#11 token (SoftHSM2), and kona's derivation pipeline
//! (oracle/, `kona-oracle derive`: kona-derive reading the L1, kona-executor
//! executing) rebuilds every block from the L1 and the rollup config alone,
//! to tephra's block hashes. On the way: deposits, channels of several
//! frames, a kill -9 with a channel half on L1, and an L1 reorg that drops
//! a batcher transaction.
//!
//! And the negative: a batcher that cannot post (its key unfunded) past the
//! sequencing window. tephra's alarm fires before the window closes and
//! tephra stops making blocks; once it closed, kona derives deposit-only
//! blocks in place of tephra's.

mod common;
mod op;

use std::{process::Command, time::Duration};

use alloy_consensus::TxEnvelope;
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{Address, TxKind, U256, address, keccak256};
use op::*;
use serde_json::{Value, json};
use tephra_testkit::{
    abi::deposit_transaction_call,
    fresh_dir,
    rpc::{RpcClient, quantity},
    tephra::{Readiness, TephraProcess},
    wait_until,
};

const RECIPIENT: Address = address!("000000000000000000000000000000000000b0b0");

/// `kona-oracle derive`: L2 blocks 1..=`to` derived from the L1 alone and
/// executed, each hash compared with tephra's; with `deposit_only`, those
/// blocks must come out deposit-only (and so differ from tephra's).
fn kona_derive(dir: &std::path::Path, l1: &L1, l2_url: &str, to: u64, deposit_only: Option<(u64, u64)>) -> Vec<Value> {
    let chain = dir.join("chain");
    let mut command = Command::new(oracle_binary());
    command
        .args(["derive", "--timeout", "120", "--l1-rpc", &l1.0.url, "--l2-rpc", l2_url])
        .arg("--rollup")
        .arg(chain.join("rollup.json"))
        .arg("--genesis")
        .arg(chain.join("genesis.json"))
        .args(["--to", &to.to_string()]);
    if let Some((from, until)) = deposit_only {
        command.args(["--expect-deposit-only", &format!("{from}..={until}")]);
    }
    let output = command.output().expect("kona-oracle runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let tail: String = stdout.lines().rev().take(3).collect::<Vec<_>>().join("\n");
    assert!(
        output.status.success(),
        "kona's derivation disagrees:\n{tail}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect()
}

/// `tephra hsm ... --key batcher` with the node's config.
fn hsm(config: &std::path::Path, softhsm2_conf: &str, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_tephra"))
        .env("SOFTHSM2_CONF", softhsm2_conf)
        .arg("hsm")
        .args(args)
        .args(["--key", "batcher", "--config"])
        .arg(config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "tephra hsm {args:?}: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// A batcher transaction on L1: its block, the transaction, its frames as
/// (number, is_last).
type BatcherTx = (u64, TxEnvelope, Vec<(u16, bool)>);

/// The batcher transactions to `inbox` in L1 blocks 1..=head.
fn batcher_txs(l1: &L1, inbox: Address) -> Vec<BatcherTx> {
    let head = quantity(&l1.rpc("eth_blockNumber", json!([])));
    let mut found = Vec::new();
    for number in 1..=head {
        let block = l1.rpc("eth_getBlockByNumber", json!([format!("{number:#x}"), true]));
        for tx in block["transactions"].as_array().unwrap() {
            if tx["to"].as_str().and_then(|to| to.parse::<Address>().ok()) != Some(inbox) {
                continue;
            }
            let raw = l1.rpc("eth_getRawTransactionByHash", json!([tx["hash"]]));
            let bytes = hex::decode(raw.as_str().unwrap().trim_start_matches("0x")).unwrap();
            let envelope = TxEnvelope::decode_2718(&mut bytes.as_slice()).unwrap();
            // A blob transaction's frames are in its blobs, not its calldata.
            let input = alloy_consensus::Transaction::input(&envelope).to_vec();
            let frames = if input.is_empty() { Vec::new() } else { frames_of(&input) };
            found.push((number, envelope, frames));
        }
    }
    found
}

/// The frames of a batcher transaction's payload, read by hand from the
/// spec's layout (version 0, then id 16 ‖ number 2 ‖ length 4 ‖ data ‖ is_last 1).
fn frames_of(payload: &[u8]) -> Vec<(u16, bool)> {
    assert_eq!(payload.first(), Some(&0), "derivation version 0");
    let mut rest = &payload[1..];
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let number = u16::from_be_bytes([rest[16], rest[17]]);
        let length = u32::from_be_bytes(rest[18..22].try_into().unwrap()) as usize;
        frames.push((number, rest[22 + length] == 1));
        rest = &rest[23 + length..];
    }
    frames
}

/// The address that signed `tx`, recovered from its signature here.
fn signer_of(tx: &TxEnvelope) -> Address {
    let signature = tx.signature();
    let hash = match tx {
        TxEnvelope::Eip1559(signed) => signed.signature_hash(),
        TxEnvelope::Eip4844(signed) => signed.signature_hash(),
        other => panic!("a batcher transaction of type {:?}", other.tx_type()),
    };
    let compact: [u8; 64] = signature.as_bytes()[..64].try_into().unwrap();
    tephra_types::crypto::recover_address(hash, &compact, u8::from(signature.v())).expect("recovers")
}

fn block_number(l2: &RpcClient, tag: &str) -> u64 {
    quantity(&l2.rpc("eth_getBlockByNumber", json!([tag, false]))["number"])
}

fn metric(node: &TephraProcess, name: &str) -> Option<f64> {
    let (_, body) = RpcClient::new(node.metrics_url()).get(&format!("{}/metrics", node.metrics_url())).ok()?;
    body.lines()
        .find(|line| line.starts_with(name) && line[name.len()..].starts_with(' '))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

/// A SoftHSM2 token with a batcher key generated in it: the config layer
/// naming it, SOFTHSM2_CONF, and the address `tephra hsm pubkey` prints.
fn hsm_batcher_key(dir: &std::path::Path) -> Option<(String, String, Address)> {
    let (_, softhsm2_conf) = common::softhsm2_token(dir, &dir.join("tokens"))?;
    let layer = format!(
        "[batcher.key]\nkind = \"pkcs11\"\npkcs11_module = \"{}\"\npkcs11_token_label = \"tephra\"\npkcs11_pin_file = \"{}\"\npkcs11_key_label = \"batcher\"\n",
        common::SOFTHSM2_MODULE,
        dir.join("pin").display()
    );
    let key_config = dir.join("batcher-key.toml");
    std::fs::write(&key_config, format!("[node]\ndata_dir = \"{}\"\n{layer}", dir.join("keygen").display())).unwrap();
    hsm(&key_config, &softhsm2_conf, &["keygen"]);
    let printed = hsm(&key_config, &softhsm2_conf, &["pubkey"]);
    let address = printed.split("batcher key address: ").nth(1).and_then(|rest| rest.split_whitespace().next());
    Some((layer, softhsm2_conf, address.expect("pubkey prints the address").parse().unwrap()))
}

#[test]
fn kona_derives_from_l1_alone_what_the_hsm_batcher_key_posts() {
    if !needs() {
        return;
    }
    let dir = fresh_dir("op-batcher");
    let Some((key_layer, softhsm2_conf, batcher)) = hsm_batcher_key(&dir) else { return };
    let env = [("SOFTHSM2_CONF", softhsm2_conf.as_str())];
    let l1 = L1::start(2, &[]);
    let (portal, config) = setup_with(&dir, &l1, &key_layer, &env);
    let rollup: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("chain/rollup.json")).unwrap()).unwrap();
    assert_eq!(rollup["genesis"]["system_config"]["batcherAddr"], json!(batcher), "the devnet funds the HSM's key");
    let inbox: Address = rollup["batch_inbox_address"].as_str().unwrap().parse().unwrap();
    // Frames of 1,000 bytes: a channel of a few blocks takes several
    // transactions, so that a kill -9 can come between them.
    let batcher_layer = "[batcher]\nframe_size_max_bytes = 1000\nchannel_target_frames = 4\ntxs_in_flight_max = 2\n\
                         resubmit_timeout_ms = 6000\npoll_interval_ms = 500\n";
    let mut node = TephraProcess::builder(env!("CARGO_BIN_EXE_tephra"), dir.join("node"))
        .config(&config)
        .config(&key_layer)
        .config(batcher_layer)
        .config("[node]\nlog_level = \"info,tephra_node::batcher=debug\"\n")
        .env("SOFTHSM2_CONF", &softhsm2_conf)
        .log_file("tephra.log")
        .start()
        .expect("tephra starts with its batcher");
    let mut l2 = L2::new(node.rpc_url());
    // 608 bytes that do not compress: each transaction adds most of a frame.
    let noise = |seed: u64| -> Vec<u8> {
        (0..19u64).flat_map(|chunk| keccak256([seed.to_be_bytes(), chunk.to_be_bytes()].concat()).0).collect()
    };

    // Deposits come from L1 keys the L2 senders (0 to 2) do not use: a
    // deposit from an account takes its next L2 nonce.
    // Transfers with incompressible calldata and a deposit, then a kill -9
    // once a channel is partly on L1.
    for i in 0..6 {
        l2.send((i % 3) as usize, TxKind::Call(RECIPIENT), 1, noise(i));
    }
    l1.send(5, portal, ETHER, deposit_transaction_call(RECIPIENT, U256::from(ETHER / 4), 100_000, false, &[]));
    // The newest frame on L1 is not its channel's last.
    wait_until("a channel partly on L1", Duration::from_secs(90), || {
        batcher_txs(&l1, inbox).last().is_some_and(|(_, _, frames)| frames.last().is_some_and(|(_, last)| !last))
    });
    node.kill9();
    node.start().expect("tephra restarts mid-channel");
    for i in 6..12 {
        l2.send((i % 3) as usize, TxKind::Call(RECIPIENT), 1, noise(i));
    }

    // An L1 reorg drops the newest block holding a batcher transaction.
    let mut dropped = None;
    wait_until("a batcher transaction after the restart", Duration::from_secs(60), || {
        let head = quantity(&l1.rpc("eth_blockNumber", json!([])));
        dropped = batcher_txs(&l1, inbox)
            .last()
            .map(|(block, tx, _)| (*block, *tx.tx_hash()))
            .filter(|(b, _)| *b + 1 >= head);
        dropped.is_some()
    });
    let (dropped_block, dropped_tx) = dropped.unwrap();
    let head = quantity(&l1.rpc("eth_blockNumber", json!([])));
    l1.rpc("anvil_reorg", json!([head - dropped_block + 1, []]));
    assert!(l1.rpc("eth_getTransactionReceipt", json!([dropped_tx])).is_null(), "the reorg dropped the batcher tx");
    // Then a minute and a half of steady traffic: a transaction every
    // second, a deposit now and then; many channels.
    let mut last_block = 0;
    for i in 12..102u64 {
        let receipt = l2.send((i % 3) as usize, TxKind::Call(RECIPIENT), 1, noise(i));
        last_block = quantity(&receipt["blockNumber"]);
        if i % 30 == 0 {
            l1.send(6, portal, ETHER, deposit_transaction_call(RECIPIENT, U256::from(i), 100_000, false, &[]));
        }
        std::thread::sleep(Duration::from_millis(1_000));
    }

    // Everything sent becomes safe, and kona derives it from L1.
    wait_until("the last transaction's block sealed", Duration::from_secs(10), || {
        block_number(&l2.client, "latest") >= last_block
    });
    let target = last_block;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while block_number(&l2.client, "safe") < target {
        let status = l2.client.rpc("optimism_syncStatus", json!([]));
        assert!(std::time::Instant::now() < deadline, "safe short of {target}: {status}\n/ready: {:?}", ready(&node));
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = l2.client.rpc("optimism_syncStatus", json!([]));
    assert!(status["safe_l2"]["number"].as_u64().unwrap() >= target, "{status}");
    let lines = kona_derive(&dir, &l1, node.rpc_url(), target, None);
    let derived: Vec<&Value> = lines.iter().filter(|line| line.get("block").is_some()).collect();
    assert_eq!(derived.len() as u64, target, "every block derived from L1");
    let users: u64 = derived.iter().map(|line| line["user_transactions"].as_u64().unwrap()).sum();
    assert_eq!(users, 102, "the workload's transactions, each once, came from the batches");

    // Every batcher transaction recovers to the HSM's key, which signed
    // each (the audit log holds at least as many L1 transactions).
    let posted = batcher_txs(&l1, inbox);
    assert!(posted.len() >= 6, "several channels of several frames: {}", posted.len());
    for (block, tx, _) in &posted {
        assert_eq!(signer_of(tx), batcher, "the batcher tx in L1 block {block}");
    }
    let audit = hsm(&dir.join("node/tephra.toml"), &softhsm2_conf, &["audit", "verify"]);
    let signatures: usize = audit.split("audit log ok: ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(signatures >= posted.len(), "{audit}");
    assert!(metric(&node, "tephra_batcher_blocks_posted_total").is_some_and(|n| n >= target as f64));
    assert_eq!(metric(&node, "tephra_batcher_window_alarm"), Some(0.0));

    // anvil finalizes 64 blocks below its head: past them, everything safe
    // is finalized, and a restart reads back from the finalized checkpoint.
    l1.rpc("anvil_mine", json!(["0x41"]));
    wait_until("the finalized head to pass the workload", Duration::from_secs(30), || {
        block_number(&l2.client, "finalized") >= target
    });
    node.kill9();
    node.start().expect("tephra restarts");
    wait_until("safe and finalized again after the restart", Duration::from_secs(30), || {
        block_number(&l2.client, "finalized") >= target && block_number(&l2.client, "safe") >= target
    });
    let status = l2.client.rpc("optimism_syncStatus", json!([]));
    assert!(status["finalized_l1"]["number"].as_u64().is_some_and(|n| n > 0), "{status}");
}

#[test]
fn a_batcher_that_cannot_post_raises_the_window_alarm_before_verifiers_replace_its_blocks() {
    if !needs() {
        return;
    }
    let dir = fresh_dir("op-batcher-window");
    let l1 = L1::start(1, &[]);
    let (_, config) = setup(&dir, &l1);
    // A short sequencing window: 16 L1 blocks.
    let rollup_path = dir.join("chain/rollup.json");
    let mut rollup: Value = serde_json::from_str(&std::fs::read_to_string(&rollup_path).unwrap()).unwrap();
    rollup["seq_window_size"] = json!(16);
    std::fs::write(&rollup_path, rollup.to_string()).unwrap();
    let batcher: Address = rollup["genesis"]["system_config"]["batcherAddr"].as_str().unwrap().parse().unwrap();
    // The batcher key cannot pay for anything.
    l1.rpc("anvil_setBalance", json!([batcher, "0x0"]));
    // L1 stands still until the workload is in: on a slow machine the window
    // of block 1 could otherwise close (and the alarm refuse the workload)
    // before the node has started.
    l1.rpc("evm_setIntervalMining", json!([0]));
    let mut node = TephraProcess::builder(env!("CARGO_BIN_EXE_tephra"), dir.join("node"))
        .config(&config)
        .config("[batcher]\nsub_safety_margin_l1_blocks = 4\n")
        .log_file("tephra.log")
        // /ready says the batcher cannot post from the first poll on.
        .ready_when(Readiness::Answering)
        .start()
        .expect("tephra starts");
    let mut l2 = L2::new(node.rpc_url());
    // Answering is not started: the first block says it is.
    wait_until("the first block", Duration::from_secs(30), || block_number(&l2.client, "latest") >= 1);
    // The blocks that hold the workload: the ones verifiers must replace.
    let (mut first_sent, mut last_sent) = (u64::MAX, 0);
    for i in 0..4 {
        let receipt = l2.send(i % 3, TxKind::Call(RECIPIENT), 1, Vec::new());
        let block = quantity(&receipt["blockNumber"]);
        (first_sent, last_sent) = (first_sent.min(block), last_sent.max(block));
    }
    l1.rpc("evm_setIntervalMining", json!([1]));
    // The alarm, while the window of block 1 (the oldest not posted) is still open.
    wait_until("block 1 sealed", Duration::from_secs(10), || block_number(&l2.client, "latest") >= 1);
    let origin_of_1 = l2.client.rpc("optimism_outputAtBlock", json!(["0x1"]))["blockRef"]["l1origin"]["number"]
        .as_u64()
        .expect("block 1's L1 origin");
    let window_closes = origin_of_1 + 16;
    let mut alarm_at_l1 = 0;
    wait_until("the window alarm on /ready", Duration::from_secs(60), || {
        let (status, body) = ready(&node);
        alarm_at_l1 = quantity(&l1.rpc("eth_blockNumber", json!([])));
        status != 200 && body.contains("batch window")
    });
    assert!(
        alarm_at_l1 < window_closes,
        "the alarm at L1 block {alarm_at_l1}, before the window closes at {window_closes}"
    );
    let (_, body) = ready(&node);
    assert!(body.contains("insufficient funds"), "/ready names why the batcher cannot post: {body}");
    assert_eq!(metric(&node, "tephra_batcher_window_alarm"), Some(1.0));
    // No new blocks while the alarm holds.
    let held = block_number(&l2.client, "latest");
    std::thread::sleep(Duration::from_secs(3));
    assert!(block_number(&l2.client, "latest") <= held + 1, "tephra stops extending its unsafe chain");
    let held = block_number(&l2.client, "latest");
    assert_eq!(block_number(&l2.client, "safe"), 0, "nothing was posted");

    // Past the window, verifiers derive deposit-only blocks in place of tephra's.
    wait_until("the window to close", Duration::from_secs(60), || {
        quantity(&l1.rpc("eth_blockNumber", json!([]))) > window_closes + 2
    });
    let lines = kona_derive(&dir, &l1, node.rpc_url(), held, Some((first_sent, last_sent)));
    let derived: Vec<&Value> = lines.iter().filter(|line| line.get("block").is_some()).collect();
    assert_eq!(derived.len() as u64, held);
    assert!(derived.iter().all(|line| line["user_transactions"] == 0), "deposit-only blocks: {derived:?}");
    node.stop();
}

#[test]
fn kona_derives_what_the_batcher_posts_in_blobs() {
    if !needs() {
        return;
    }
    let dir = fresh_dir("op-batcher-blobs");
    let l1 = L1::start(2, &[]);
    let (portal, config) = setup(&dir, &l1);
    let rollup: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("chain/rollup.json")).unwrap()).unwrap();
    let inbox: Address = rollup["batch_inbox_address"].as_str().unwrap().parse().unwrap();
    let batcher: Address = rollup["genesis"]["system_config"]["batcherAddr"].as_str().unwrap().parse().unwrap();
    let mut node = TephraProcess::builder(env!("CARGO_BIN_EXE_tephra"), dir.join("node"))
        .config(&config)
        .config("[batcher]\ndata_availability = \"blobs\"\nframe_size_max_bytes = 130043\npoll_interval_ms = 500\n")
        .config("[node]\nlog_level = \"info,tephra_node::batcher=debug\"\n")
        .log_file("tephra.log")
        .start()
        .expect("tephra starts with its batcher on blobs");
    let mut l2 = L2::new(node.rpc_url());
    let mut last_block = 0;
    let mut send = |l2: &mut L2, i: u64| {
        let receipt = l2.send((i % 3) as usize, TxKind::Call(RECIPIENT), 1, vec![u8::try_from(i).unwrap(); 200]);
        last_block = last_block.max(quantity(&receipt["blockNumber"]));
    };
    for i in 0..8 {
        send(&mut l2, i);
        std::thread::sleep(Duration::from_millis(500));
    }
    l1.send(5, portal, ETHER, deposit_transaction_call(RECIPIENT, U256::from(7), 100_000, false, &[]));
    // A restart reads its blob batches back from the blobs it kept.
    wait_until("a blob batch on L1", Duration::from_secs(60), || !batcher_txs(&l1, inbox).is_empty());
    node.kill9();
    node.start().expect("tephra restarts");
    for i in 8..16 {
        send(&mut l2, i);
        std::thread::sleep(Duration::from_millis(500));
    }
    wait_until("the workload's blocks safe", Duration::from_secs(120), || {
        block_number(&l2.client, "safe") >= last_block
    });
    let lines = kona_derive(&dir, &l1, node.rpc_url(), last_block, None);
    let derived: Vec<&Value> = lines.iter().filter(|line| line.get("block").is_some()).collect();
    assert_eq!(derived.len() as u64, last_block, "every block derived from L1's blobs");
    let users: u64 = derived.iter().map(|line| line["user_transactions"].as_u64().unwrap()).sum();
    assert_eq!(users, 16, "the workload's transactions, each once");
    let posted = batcher_txs(&l1, inbox);
    for (block, tx, _) in &posted {
        let TxEnvelope::Eip4844(signed) = tx else { panic!("a blob transaction in L1 block {block}: {tx:?}") };
        assert_eq!(signed.tx().tx().blob_versioned_hashes.len(), 1, "a frame a blob, a blob a transaction");
        assert_eq!(signer_of(tx), batcher);
    }
    assert!(metric(&node, "tephra_batcher_txs_posted_total{kind=\"blob\"}").is_some_and(|n| n >= posted.len() as f64));
}

#[test]
fn an_hsm_that_fails_stops_posting_not_preconfirmations_and_posting_resumes() {
    if !needs() {
        return;
    }
    let dir = fresh_dir("op-batcher-hsm-down");
    let Some((key_layer, softhsm2_conf, _)) = hsm_batcher_key(&dir) else { return };
    let env = [("SOFTHSM2_CONF", softhsm2_conf.as_str())];
    let l1 = L1::start(1, &[]);
    let (_, config) = setup_with(&dir, &l1, &key_layer, &env);
    let node = TephraProcess::builder(env!("CARGO_BIN_EXE_tephra"), dir.join("node"))
        .config(&config)
        .config(&key_layer)
        .env("SOFTHSM2_CONF", &softhsm2_conf)
        .log_file("tephra.log")
        .start()
        .expect("tephra starts with its batcher");
    let mut l2 = L2::new(node.rpc_url());
    l2.send(0, TxKind::Call(RECIPIENT), 1, Vec::new());
    wait_until("a block posted", Duration::from_secs(60), || block_number(&l2.client, "safe") >= 1);
    // The token's store goes away: SoftHSM2 reads it at every signature.
    let tokens = dir.join("tokens");
    let hidden = dir.join("tokens-away");
    std::fs::rename(&tokens, &hidden).unwrap();
    let mut reason = String::new();
    wait_until("/ready to say the batcher cannot sign", Duration::from_secs(60), || {
        let (status, body) = ready(&node);
        reason = body;
        status != 200 && reason.contains("batcher")
    });
    assert!(reason.contains("batcher key") || reason.contains("HSM"), "/ready: {reason}");
    // Preconfirmations and blocks go on meanwhile.
    let posted = l2.client.rpc("optimism_syncStatus", json!([]))["pending_safe_l2"]["number"].as_u64().unwrap();
    let receipt = l2.send(1, TxKind::Call(RECIPIENT), 1, Vec::new());
    assert_eq!(receipt["status"], "0x1", "preconfirmed while the batcher key is down");
    let head = block_number(&l2.client, "latest");
    std::thread::sleep(Duration::from_secs(3));
    assert!(block_number(&l2.client, "latest") > head, "blocks go on");
    let still = l2.client.rpc("optimism_syncStatus", json!([]))["pending_safe_l2"]["number"].as_u64().unwrap();
    assert!(still <= posted + 2, "nothing new posted without the key ({posted} then {still})");
    // The token back: posting resumes by itself.
    std::fs::rename(&hidden, &tokens).unwrap();
    let target = block_number(&l2.client, "latest");
    wait_until("posting to resume", Duration::from_secs(60), || {
        block_number(&l2.client, "safe") >= target && ready(&node).0 == 200
    });
}
