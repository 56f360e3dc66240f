//! Real clients against a real node: cast, viem, and raw JSON-RPC.

mod common;

use alloy_primitives::{B256, U256, keccak256};
use common::{DEV_ADDRESS_0, DEV_KEY_0, TephraNode, quantity, signed_transfer};
use serde_json::{Value, json};

#[test]
fn cast_sends_a_transfer_deploys_a_token_and_reads_both_receipts() {
    // On 2 execution shards: real clients see what sequential execution gives.
    let node = TephraNode::start("cast", "[exec]\nshards = 2\n");
    let bob = "0x000000000000000000000000000000000000b0b0";
    let transfer = node.cast(&["send", "--private-key", &*DEV_KEY_0, bob, "--value", "12345", "--json"]);
    let transfer: Value = serde_json::from_str(&transfer).unwrap();
    assert_eq!(transfer["status"], "0x1");
    assert_eq!(node.cast(&["balance", bob]), "12345");

    let token_code = std::fs::read_to_string(common::workspace_root().join("contracts/Token.bin")).unwrap();
    let supply = common::cast(&["abi-encode", "constructor(uint256)", "1000000"]);
    let init = format!("0x{}{}", token_code.trim(), supply.trim_start_matches("0x"));
    let deploy = node.cast(&["send", "--json", "--private-key", &*DEV_KEY_0, "--create", &init]);
    let deploy: Value = serde_json::from_str(&deploy).unwrap();
    assert_eq!(deploy["status"], "0x1");
    let token = deploy["contractAddress"].as_str().unwrap().to_string();
    assert!(node.cast(&["code", &token]).len() > 100);

    let send =
        node.cast(&["send", "--private-key", &*DEV_KEY_0, &token, "transfer(address,uint256)", bob, "250", "--json"]);
    let send: Value = serde_json::from_str(&send).unwrap();
    assert_eq!(send["logs"][0]["topics"][0], format!("{}", keccak256("Transfer(address,address,uint256)")));
    assert_eq!(node.cast(&["call", &token, "balanceOf(address)(uint256)", bob]), "250");

    // Both receipts read back by hash once sealed.
    for hash in [transfer["transactionHash"].as_str().unwrap(), deploy["transactionHash"].as_str().unwrap()] {
        let receipt: Value = serde_json::from_str(&node.cast(&["receipt", hash, "--json"])).unwrap();
        assert_eq!(receipt["status"], "0x1");
        assert!(receipt["blockHash"].is_string());
    }
}

#[test]
fn send_raw_transaction_sync_returns_the_preconfirmed_receipt() {
    let node = TephraNode::start("sync", "");
    let raw = signed_transfer(&node, &DEV_KEY_0, 0, "0x000000000000000000000000000000000000b0b1", 7);
    let receipt = node.rpc("eth_sendRawTransactionSync", json!([raw, 5000]));
    assert_eq!(receipt["status"], "0x1");
    assert_eq!(receipt["gasUsed"], "0x5208");
    assert_eq!(receipt["from"].as_str().unwrap().to_lowercase(), DEV_ADDRESS_0.to_lowercase());
    let number = quantity(&receipt["blockNumber"]);
    // Sealed at the number the preconfirmation promised.
    node.wait_for_block(number);
    let sealed = node.rpc("eth_getTransactionReceipt", json!([receipt["transactionHash"]]));
    assert_eq!(sealed["blockNumber"], receipt["blockNumber"]);
    assert_eq!(sealed["transactionIndex"], receipt["transactionIndex"]);
    // The same bytes again: a rejection with tephra's code.
    let again = node.call("eth_sendRawTransactionSync", json!([raw])).unwrap_err();
    assert_eq!(again["code"], -32000);
    assert_eq!(again["data"]["code"], 305, "{again}");
}

#[test]
fn json_rpc_behaves_as_clients_expect() {
    let node = TephraNode::start("jsonrpc", "[rpc]\nrequest_size_max_bytes = 100000\n");
    // viem falls back on exactly -32601.
    let unknown = node.call("eth_newPendingTransactionFilterX", json!([])).unwrap_err();
    assert_eq!(unknown["code"], -32601);
    // Batches answer every call.
    let batch = node.post(&json!([
        {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
        {"jsonrpc": "2.0", "id": 2, "method": "net_version", "params": []},
        {"jsonrpc": "2.0", "id": 3, "method": "web3_clientVersion", "params": []},
    ]));
    let batch = batch.as_array().unwrap();
    assert_eq!(batch.len(), 3);
    assert!(batch.iter().any(|r| r["result"] == "0x7a69"));
    assert!(batch.iter().any(|r| r["result"] == "31337"));
    // An oversized request is refused, not processed.
    let status = node.status_for_announced_body(200_000);
    assert!(status.contains("413"), "{status}");
    // Rejections carry the execution core's codes.
    let wrong_chain =
        tephra_exec::dev::DevKey::dev(0).transfer(1, 0, alloy_primitives::Address::ZERO, alloy_primitives::U256::ZERO);
    let wrong_chain = format!("0x{}", hex::encode(alloy_eips::eip2718::Encodable2718::encoded_2718(&wrong_chain)));
    let error = node.call("eth_sendRawTransaction", json!([wrong_chain])).unwrap_err();
    assert_eq!(error["data"]["code"], 200, "{error}");
    let malformed = node.call("eth_sendRawTransaction", json!(["0x02ff"])).unwrap_err();
    assert_eq!(malformed["data"]["code"], 100, "{malformed}");
    // EIP-7966: a transaction that cannot preconfirm in time answers code 4.
    let stuck = signed_transfer(&node, &DEV_KEY_0, 5, "0x000000000000000000000000000000000000b0b0", 1);
    let timeout = node.call("eth_sendRawTransactionSync", json!([stuck, 100])).unwrap_err();
    assert_eq!(timeout["code"], 4, "{timeout}");
    // A gapped nonce is pooled (pending nonce does not move), then filled.
    let gapped = signed_transfer(&node, &DEV_KEY_0, 1, "0x000000000000000000000000000000000000b0b0", 1);
    let hash = node.rpc("eth_sendRawTransaction", json!([gapped]));
    assert_eq!(node.rpc("eth_getTransactionCount", json!([&*DEV_ADDRESS_0, "pending"])), "0x0");
    let fill = signed_transfer(&node, &DEV_KEY_0, 0, "0x000000000000000000000000000000000000b0b0", 1);
    node.rpc("eth_sendRawTransactionSync", json!([fill]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while node.rpc("eth_getTransactionReceipt", json!([hash])).is_null() {
        assert!(std::time::Instant::now() < deadline, "the gapped transaction never sealed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(node.rpc("eth_getTransactionCount", json!([&*DEV_ADDRESS_0, "latest"])), "0x2");
    // eth_getBlockReceipts: null for a block not kept; the open block's at pending.
    assert!(node.rpc("eth_getBlockReceipts", json!(["0xffffff"])).is_null());
    let again = signed_transfer(&node, &DEV_KEY_0, 2, "0x000000000000000000000000000000000000b0b0", 1);
    let preconfirmed = node.rpc("eth_sendRawTransactionSync", json!([again]));
    let pending = node.rpc("eth_getBlockReceipts", json!(["pending"]));
    let sealed_meanwhile = quantity(&node.rpc("eth_blockNumber", json!([]))) >= quantity(&preconfirmed["blockNumber"]);
    if !sealed_meanwhile {
        let receipts = pending.as_array().unwrap();
        assert!(receipts.iter().any(|r| r["transactionHash"] == preconfirmed["transactionHash"]), "{pending}");
        assert!(receipts.iter().all(|r| r["blockHash"].is_null()), "{pending}");
    }
    // Every sealed block is signed by the block key, with the OP Stack hash.
    let signer: alloy_primitives::Address = serde_json::from_value(node.rpc("tephra_blockSigner", json!([]))).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let block = loop {
        let block = node.rpc("eth_getBlockByNumber", json!(["finalized", false]));
        if quantity(&block["number"]) > 0 {
            break block;
        }
        assert!(std::time::Instant::now() < deadline, "no block signed in time");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let hash: B256 = serde_json::from_value(block["hash"].clone()).unwrap();
    let signature = hex::decode(block["signature"].as_str().unwrap().trim_start_matches("0x")).unwrap();
    let payload = tephra_hsm::Payload::SealedBlock {
        chain_id: 31337,
        number: quantity(&block["number"]),
        block_hash: hash,
        leader_epoch: 0,
    };
    let signature = tephra_hsm::Signature65(signature.try_into().unwrap());
    assert_eq!(tephra_hsm::recover(&signature, payload.signing_hash()), Some(signer));
    // Pending is the open block; the state at block 0 (genesis: 10,000 ETH)
    // comes from the state history; a block not sealed yet is refused with
    // geth's generic server error (-32000), naming it.
    assert!(node.rpc("eth_getBlockByNumber", json!(["pending", false]))["hash"].is_null());
    assert_eq!(node.rpc("eth_getBalance", json!([&*DEV_ADDRESS_0, "0x0"])), "0x21e19e0c9bab2400000");
    let future =
        node.call("eth_getBalance", json!([&*DEV_ADDRESS_0, "0xffffff"])).expect_err("a future block is refused");
    assert_eq!(future["code"], -32000, "{future}");
    assert!(future["message"].as_str().unwrap().starts_with("block 16777215 is not sealed yet"), "{future}");
    // Metrics count what happened.
    let metrics = node.metrics();
    assert!(metrics.contains("tephra_tx_rejected_total{code=\"200\"} 1"), "{metrics}");
    assert!(metrics.contains("tephra_preconf_latency_us_count"));
}

/// A batch's calls run at once, answered in the batch's order: a sync send
/// of nonce 1 waits for the nonce 0 that comes after it in the same batch
/// (one call at a time, it would time out before that one was even read).
#[test]
fn a_batch_runs_its_calls_at_once_and_answers_in_order() {
    let node = TephraNode::start("batch", "");
    let to = "0x000000000000000000000000000000000000b0b0";
    let (first, second) = (signed_transfer(&node, &DEV_KEY_0, 0, to, 1), signed_transfer(&node, &DEV_KEY_0, 1, to, 1));
    let answers = node.post(&json!([
        {"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransactionSync", "params": [second, 3000]},
        {"jsonrpc": "2.0", "method": "eth_chainId", "params": []},
        {"jsonrpc": "2.0", "id": 2, "method": "eth_sendRawTransaction", "params": [first]},
        {"jsonrpc": "2.0", "id": 3, "method": "eth_noSuchMethod", "params": []},
    ]));
    let answers = answers.as_array().unwrap();
    let ids: Vec<&Value> = answers.iter().map(|a| &a["id"]).collect();
    assert_eq!(ids, [&json!(1), &json!(2), &json!(3)], "the notification answers nothing: {answers:?}");
    assert_eq!(answers[0]["result"]["status"], "0x1", "{answers:?}");
    assert_eq!(answers[1]["result"].as_str().map(str::len), Some(66), "{answers:?}");
    assert_eq!(answers[2]["error"]["code"], -32601, "{answers:?}");
}

#[test]
fn init_prints_mainnet_genesis_root_and_hash() {
    let dir = common::fresh_dir("init");
    let config = dir.join("tephra.toml");
    std::fs::write(&config, format!("[node]\ndata_dir = \"{}\"\n", dir.join("data").display())).unwrap();
    let genesis = tephra_testkit::testdata("ethereum-mainnet-genesis.json");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tephra"))
        .args(["init", "--genesis", genesis.to_str().unwrap(), "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("0xd7f8974fb5ac78d9ac099b9ad5018bedc2ce0a72dad1827a1709da30580f0544"), "{stdout}");
    assert!(stdout.contains("0xd4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3"), "{stdout}");
    assert!(dir.join("data/genesis.json").exists());
    // The data dir now belongs to mainnet: another genesis is refused.
    let dev = dir.join("dev.json");
    std::fs::write(&dev, tephra_exec::chainspec::DEV_GENESIS_JSON).unwrap();
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_tephra"))
        .args(["init", "--genesis", dev.to_str().unwrap(), "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("another chain"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `tephra` with `args`: whether it succeeded, and its stdout and stderr.
fn tephra(args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tephra")).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[test]
fn op_stack_init_checks_the_rollup_config_against_the_genesis_naming_the_field() {
    let dir = common::fresh_dir("init-op");
    let config = dir.join("tephra.toml");
    std::fs::write(&config, format!("[node]\ndata_dir = \"{}\"\n", dir.join("data").display())).unwrap();
    let gz = std::fs::File::open(tephra_testkit::testdata("op/420110017-genesis-l2.json.gz")).unwrap();
    let genesis = dir.join("genesis.json");
    std::io::copy(&mut flate2::read::GzDecoder::new(gz), &mut std::fs::File::create(&genesis).unwrap()).unwrap();
    let rollup_path = tephra_testkit::testdata("op/420110017-rollup.json");
    let rollup: Value = serde_json::from_str(&std::fs::read_to_string(&rollup_path).unwrap()).unwrap();
    let write_rollup = |name: &str, edit: &dyn Fn(&mut Value)| {
        let mut edited = rollup.clone();
        edit(&mut edited);
        let path = dir.join(name);
        std::fs::write(&path, edited.to_string()).unwrap();
        path
    };
    let init = |rollup: Option<&std::path::Path>| {
        let mut args = vec!["init", "--genesis", genesis.to_str().unwrap(), "--config", config.to_str().unwrap()];
        if let Some(rollup) = rollup {
            args.extend(["--rollup-config", rollup.to_str().unwrap()]);
        }
        tephra(&args)
    };

    // Refused, naming what is wrong; nothing of the rollup config is kept.
    let (ok, text) = init(None);
    assert!(!ok && text.contains("needs its rollup.json"), "{text}");
    let other_chain = write_rollup("other-chain.json", &|r| r["l2_chain_id"] = json!(10));
    let (ok, text) = init(Some(&other_chain));
    assert!(!ok && text.contains("l2_chain_id") && text.contains("420110017"), "{text}");
    let other_fork = write_rollup("other-fork.json", &|r| r["granite_time"] = json!(1_800_000_000));
    let (ok, text) = init(Some(&other_fork));
    assert!(!ok && text.contains("granite_time"), "{text}");
    let jovian = write_rollup("jovian.json", &|r| r["jovian_time"] = json!(0));
    let (ok, text) = init(Some(&jovian));
    assert!(!ok && text.contains("Jovian is not supported"), "{text}");
    let garbage = dir.join("garbage.json");
    std::fs::write(&garbage, "{\"genesis\": [").unwrap();
    let (ok, text) = init(Some(&garbage));
    assert!(!ok && text.contains("rollup config"), "{text}");
    assert!(!dir.join("data/rollup.json").exists());

    // The pair op-deployer wrote: the genesis hash is the one rollup.json names.
    let (ok, text) = init(Some(&rollup_path));
    assert!(ok, "{text}");
    assert!(text.contains("0xadfcd0337e984caa0c2ffb2beebd2a7aeac06752cd18eb498242597d13caf708"), "{text}");
    assert!(text.contains("rollup.json agrees (L1 chain id 7088850215"), "{text}");
    assert!(dir.join("data/rollup.json").exists());
    // Another rollup config over this data dir is refused.
    let (ok, text) = init(Some(&other_fork));
    assert!(!ok && text.contains("granite_time"), "{text}");
    // An OP Stack chain is sequenced against an L1: without one, run refuses, naming the key.
    let (ok, text) = tephra(&["run", "--config", config.to_str().unwrap()]);
    assert!(!ok && text.contains("OP Stack chain 420110017") && text.contains("l1.rpc"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn viem_sends_waits_reads_balances_logs_and_watches_blocks() {
    let node = TephraNode::start("viem", "[exec]\nshards = 2\n");
    let script = common::workspace_root().join("cli/tests/clients/viem.mjs");
    let output = std::process::Command::new("node")
        .arg(&script)
        .env("TEPHRA_RPC", &node.rpc_url)
        .env("TEPHRA_WS", &node.ws_url)
        .env("TOKEN_BIN", common::workspace_root().join("contracts/Token.bin"))
        .current_dir(common::workspace_root())
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "viem script failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("viem: ok"), "{stdout}");
}

#[test]
fn estimates_calls_logs_and_fee_history_answer_exactly() {
    let node = TephraNode::start("queries", "[rpc]\nget_logs_block_range_max = 4\nget_logs_results_max = 1\n");
    let token_code = std::fs::read_to_string(common::workspace_root().join("contracts/Token.bin")).unwrap();
    let supply = common::cast(&["abi-encode", "constructor(uint256)", "1000000"]);
    let init = format!("0x{}{}", token_code.trim(), supply.trim_start_matches("0x"));
    let deploy: Value =
        serde_json::from_str(&node.cast(&["send", "--json", "--private-key", &*DEV_KEY_0, "--create", &init])).unwrap();
    let token = deploy["contractAddress"].as_str().unwrap().to_string();
    let bob = "0x000000000000000000000000000000000000b0b3";

    // eth_call reads the state; a revert comes back with geth's code 3 and reason.
    let balance_of = common::cast(&["calldata", "balanceOf(address)", &*DEV_ADDRESS_0]);
    let balance = node.rpc("eth_call", json!([{"to": token, "data": balance_of}, "latest"]));
    assert_eq!(
        U256::from_str_radix(balance.as_str().unwrap().trim_start_matches("0x"), 16).unwrap(),
        U256::from(1_000_000)
    );
    let overdraw = common::cast(&["calldata", "transfer(address,uint256)", bob, "1"]);
    let reverted = node.call("eth_call", json!([{"from": bob, "to": token, "data": overdraw}, "latest"])).unwrap_err();
    assert_eq!(reverted["code"], 3);
    assert!(reverted["message"].as_str().unwrap().contains("insufficient balance"), "{reverted}");

    // eth_estimateGas is the least gas limit that succeeds.
    let transfer = common::cast(&["calldata", "transfer(address,uint256)", bob, "5"]);
    let estimate =
        quantity(&node.rpc("eth_estimateGas", json!([{"from": &*DEV_ADDRESS_0, "to": token, "data": transfer}])));
    let send_with = |nonce: u64, gas: u64| -> Value {
        let raw = node.cast(&[
            "mktx",
            "--private-key",
            &*DEV_KEY_0,
            "--nonce",
            &nonce.to_string(),
            "--gas-limit",
            &gas.to_string(),
            "--gas-price",
            "20gwei",
            "--priority-gas-price",
            "1gwei",
            &token,
            "transfer(address,uint256)",
            bob,
            "5",
        ]);
        node.rpc("eth_sendRawTransactionSync", json!([raw]))
    };
    let nonce = quantity(&node.rpc("eth_getTransactionCount", json!([&*DEV_ADDRESS_0, "pending"])));
    assert_eq!(send_with(nonce, estimate - 1)["status"], "0x0", "one gas less fails");
    let ok = send_with(nonce + 1, estimate);
    assert_eq!(ok["status"], "0x1", "the estimate succeeds");

    // eth_getLogs by address and topic, and its range bound.
    node.wait_for_block(quantity(&ok["blockNumber"]));
    let transfer_topic = format!("{}", alloy_primitives::keccak256("Transfer(address,address,uint256)"));
    let bob_topic = format!("0x{:0>64}", bob.trim_start_matches("0x"));
    // From the token's deployment to the transfer, in windows the range
    // bound allows: the calls between may take more than 4 blocks.
    let (deployed, transferred) = (quantity(&deploy["blockNumber"]), quantity(&ok["blockNumber"]));
    let mut logs = Vec::new();
    for from in (deployed..=transferred).step_by(4) {
        let to = (from + 3).min(transferred);
        let filter = json!({"fromBlock": format!("{from:#x}"), "toBlock": format!("{to:#x}"), "address": token,
            "topics": [&transfer_topic, null, &bob_topic]});
        logs.extend(node.rpc("eth_getLogs", json!([filter])).as_array().unwrap().iter().cloned());
    }
    assert_eq!(logs.len(), 1, "only the successful transfer to bob: {logs:?}");
    assert_eq!(logs[0]["transactionHash"], ok["transactionHash"]);
    node.wait_for_block(5);
    let too_wide = node.call("eth_getLogs", json!([{"fromBlock": "0x0", "toBlock": "latest"}])).unwrap_err();
    assert_eq!(too_wide["code"], -32005, "{too_wide}");
    // And its result bound: the token's Transfer logs (its mint, the transfer
    // to bob) are more than one.
    let by_address = json!([{"fromBlock": "0x0", "toBlock": "latest", "address": token}]);
    let too_many = node.call("eth_getLogs", by_address).unwrap_err();
    assert_eq!(too_many["code"], -32005, "{too_many}");
    assert!(too_many["message"].as_str().unwrap().contains("more than 1 logs match"), "{too_many}");

    // eth_feeHistory: one more base fee than blocks, ratios and rewards per block.
    let history = node.rpc("eth_feeHistory", json!(["0x4", "latest", [50]]));
    assert_eq!(history["baseFeePerGas"].as_array().unwrap().len(), 5);
    assert_eq!(history["gasUsedRatio"].as_array().unwrap().len(), 4);
    assert_eq!(history["reward"].as_array().unwrap().len(), 4);
}
