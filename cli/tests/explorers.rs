//! What explorers, indexers and event listeners use: polling filters, the
//! block, transaction and pool methods, each against anvil (the reference)
//! on the same signed transactions; and a real ethers event listener across
//! restarts.

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use alloy_consensus::{TxEip1559, TypedTransaction};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, TxKind, U256, keccak256};
use common::TephraNode;
use serde_json::{Value, json};
use tephra_exec::dev::DevKey;
use tephra_testkit::{
    abi,
    anvil::Anvil,
    rpc::{self, RpcClient},
};

const CHAIN_ID: u64 = 31337;
/// eth_sendRawTransactionSync calls in one batch: within rpc.batch_size_max
/// and a sender's pooled transactions (pool.sender_txs_max).
const BATCH: usize = 50;

/// `tx` on this chain, signed by `key`, as raw bytes in hex.
fn sign(key: &DevKey, tx: TxEip1559) -> String {
    let tx = TypedTransaction::Eip1559(TxEip1559 { chain_id: CHAIN_ID, ..tx });
    format!("0x{}", hex::encode(key.sign(tx).encoded_2718()))
}

fn signed(key: &DevKey, nonce: u64, to: TxKind, input: Vec<u8>, gas_limit: u64) -> String {
    let fees = TxEip1559 { max_fee_per_gas: 100_000_000_000, max_priority_fee_per_gas: 1, ..Default::default() };
    sign(key, TxEip1559 { nonce, gas_limit, to, input: Bytes::from(input), ..fees })
}

/// The token's creation by dev key 0 at nonce 0 (a million tokens to it),
/// and its address.
fn token_creation() -> (String, Address) {
    let code = std::fs::read_to_string(common::workspace_root().join("contracts/Token.bin")).unwrap();
    let mut init = hex::decode(code.trim()).unwrap();
    init.extend_from_slice(&U256::from(1_000_000).to_be_bytes::<32>());
    let key = DevKey::dev(0);
    (signed(&key, 0, TxKind::Create, init, 2_000_000), key.address().create(0))
}

/// Dev key 0 moving one token to a fresh address, at `nonce`.
fn token_transfer(token: Address, nonce: u64) -> String {
    let to = Address::with_last_byte(0xb0).create(nonce);
    let input = abi::calldata("transfer(address,uint256)", &[abi::word(to), U256::from(1)]);
    signed(&DevKey::dev(0), nonce, TxKind::Call(token), input, 100_000)
}

/// Sends `txs` to tephra in batches, each call answering once its
/// transaction is durably preconfirmed.
fn send_preconfirmed(node: &TephraNode, txs: &[String]) {
    for chunk in txs.chunks(BATCH) {
        let answers = node.post(&rpc::batch("eth_sendRawTransactionSync", chunk.iter().map(|raw| json!([raw]))));
        for answer in answers.as_array().expect("a batch answer") {
            assert_eq!(answer["result"]["status"], "0x1", "{answer}");
        }
    }
}

/// Sends `txs` to anvil (`--no-mining`) and mines them into one block.
fn send_mined(anvil: &RpcClient, txs: &[String]) {
    for raw in txs {
        anvil.rpc("eth_sendRawTransaction", json!([raw]));
    }
    anvil.rpc("evm_mine", json!([]));
}

fn head(client: &RpcClient) -> u64 {
    common::quantity(&client.rpc("eth_blockNumber", json!([])))
}

fn block_hash(client: &RpcClient, number: u64) -> Value {
    client.rpc("eth_getBlockByNumber", json!([format!("{number:#x}"), false]))["hash"].clone()
}

/// Logs without the fields that differ between two chains carrying the
/// same transactions: the block's hash and number (tephra seals on its own
/// clock, anvil when told).
fn normalised(logs: &Value) -> Vec<Value> {
    let mut logs = logs.as_array().expect("a list of logs").clone();
    for log in &mut logs {
        let object = log.as_object_mut().expect("a log object");
        object.remove("blockHash");
        object.remove("blockNumber");
        object.remove("blockTimestamp");
    }
    logs
}

/// Waits until tephra's head has moved past `number`.
fn next_block(node: &TephraNode, client: &RpcClient) -> u64 {
    let now = head(client);
    node.wait_for_block(now + 1);
    head(client)
}

#[test]
fn filters_answer_as_anvil_does_on_the_same_transactions() {
    // eth_getLogs reads at most 3 blocks: the token's logs are in 3, found
    // through the log index over a longer range.
    let node = TephraNode::start("explorers-filters", "[rpc]\nget_logs_block_range_max = 3\n");
    let tephra = RpcClient::new(node.rpc_url.clone());
    let anvil = Anvil::start(&["--no-mining", "--order", "fifo"]);
    let (creation, token) = token_creation();
    send_preconfirmed(&node, std::slice::from_ref(&creation));
    send_mined(&anvil.client, &[creation]);
    let sides = [&tephra, &anvil.client];
    // Each batch in a block of its own on both sides, as anvil mines them:
    // the logs' places in their blocks then agree too.
    next_block(&node, &tephra);

    // Pending transactions: each preconfirmed (tephra) or pooled (anvil)
    // transaction's hash once, in order.
    let pending: Vec<Value> = sides.iter().map(|c| c.rpc("eth_newPendingTransactionFilter", json!([]))).collect();
    let transfers: Vec<String> = (1..=3).map(|nonce| token_transfer(token, nonce)).collect();
    let hashes: Vec<Value> = transfers.iter().map(|raw| json!(keccak_of(raw))).collect();
    send_preconfirmed(&node, &transfers);
    for raw in &transfers {
        anvil.client.rpc("eth_sendRawTransaction", json!([raw]));
    }
    for (side, id) in sides.iter().zip(&pending) {
        assert_eq!(side.rpc("eth_getFilterChanges", json!([id])), json!(hashes));
        assert_eq!(side.rpc("eth_getFilterChanges", json!([id])), json!([]), "each hash once");
    }
    anvil.client.rpc("evm_mine", json!([]));

    // Logs: a filter on the token's Transfer events sees the new blocks'
    // logs once; eth_getFilterLogs answers its range as eth_getLogs does.
    next_block(&node, &tephra);
    let transfer_topic = keccak256("Transfer(address,address,uint256)");
    let object = json!({"address": token, "topics": [transfer_topic]});
    let logs: Vec<Value> = sides.iter().map(|c| c.rpc("eth_newFilter", json!([object]))).collect();
    let ranged = json!({"address": token, "topics": [transfer_topic], "fromBlock": "0x0"});
    let ranged: Vec<Value> = sides.iter().map(|c| c.rpc("eth_newFilter", json!([ranged]))).collect();
    let moves: Vec<String> = (4..=8).map(|nonce| token_transfer(token, nonce)).collect();
    send_preconfirmed(&node, &moves);
    send_mined(&anvil.client, &moves);
    node.wait_for_block(head(&tephra) + 1);
    let changes: Vec<Vec<Value>> =
        sides.iter().zip(&logs).map(|(c, id)| normalised(&c.rpc("eth_getFilterChanges", json!([id])))).collect();
    assert_eq!(changes[0].len(), 5, "{:?}", changes[0]);
    assert_eq!(changes[0], changes[1]);
    for (side, id) in sides.iter().zip(&logs) {
        assert_eq!(side.rpc("eth_getFilterChanges", json!([id])), json!([]), "each log once");
    }
    let all: Vec<Vec<Value>> =
        sides.iter().zip(&ranged).map(|(c, id)| normalised(&c.rpc("eth_getFilterLogs", json!([id])))).collect();
    assert_eq!(all[0].len(), 9, "the creation's mint, 3 pending transfers and 5 moves");
    assert_eq!(all[0], all[1]);
    let get_logs =
        tephra.rpc("eth_getLogs", json!([{"address": token, "topics": [transfer_topic], "fromBlock": "0x0"}]));
    assert_eq!(normalised(&get_logs), all[0]);
    assert!(head(&tephra) + 1 > 3, "the query spans more blocks than are read");
    let by_address = tephra.rpc("eth_getLogs", json!([{"address": token, "fromBlock": "0x0"}]));
    assert_eq!(normalised(&by_address), all[0]);
    let unfiltered = tephra.call("eth_getLogs", json!([{"fromBlock": "0x0"}])).unwrap_err();
    assert_eq!(unfiltered["code"], -32005, "{unfiltered}");
    assert!(unfiltered["message"].as_str().unwrap().contains("without an address or a topic"), "{unfiltered}");

    // Blocks: the hashes of the blocks after the one current at install, in order.
    let installed_at: Vec<u64> = sides.iter().map(|c| head(c)).collect();
    let blocks: Vec<Value> = sides.iter().map(|c| c.rpc("eth_newBlockFilter", json!([]))).collect();
    next_block(&node, &tephra);
    next_block(&node, &tephra);
    anvil.client.rpc("evm_mine", json!([]));
    anvil.client.rpc("evm_mine", json!([]));
    for ((side, id), from) in sides.iter().zip(&blocks).zip(&installed_at) {
        let hashes = side.rpc("eth_getFilterChanges", json!([id]));
        let hashes = hashes.as_array().unwrap();
        assert!(hashes.len() >= 2, "{hashes:?}");
        for (offset, hash) in hashes.iter().enumerate() {
            assert_eq!(*hash, block_hash(side, from + 1 + offset as u64));
        }
    }

    // Errors and removal, word for word.
    for (side, id) in sides.iter().zip(&blocks) {
        assert_eq!(side.rpc("eth_uninstallFilter", json!([id])), json!(true));
        assert_eq!(side.rpc("eth_uninstallFilter", json!([id])), json!(false));
        let gone = side.call("eth_getFilterChanges", json!([id])).unwrap_err();
        assert_eq!((gone["code"].clone(), gone["message"].clone()), (json!(-32000), json!("filter not found")));
    }
    for (side, id) in sides.iter().zip(&pending) {
        let not_logs = side.call("eth_getFilterLogs", json!([id])).unwrap_err();
        assert_eq!(not_logs["message"], "filter not found", "a pending-transaction filter has no logs");
    }
}

/// Dev key 1 moving `value` wei to a fixed address at `nonce`, at cast's
/// default fees (20 gwei, a 1 gwei tip).
fn ether_transfer(nonce: u64, value: u64) -> String {
    let fees =
        TxEip1559 { max_fee_per_gas: 20_000_000_000, max_priority_fee_per_gas: 1_000_000_000, ..Default::default() };
    let to = TxKind::Call(Address::with_last_byte(0xb0));
    sign(&DevKey::dev(1), TxEip1559 { nonce, gas_limit: 21_000, to, value: U256::from(value), ..fees })
}

/// A transaction object without what differs between the chains: its
/// block's hash and number, and anvil's `blockTimestamp` (tephra does not
/// send it yet). The gas price is compared less the block's base fee.
fn normalised_tx(tx: &Value) -> Value {
    let mut tx = tx.clone();
    if let Some(object) = tx.as_object_mut() {
        for key in ["blockHash", "blockNumber", "blockTimestamp"] {
            object.remove(key);
        }
    }
    tx
}

/// The txpool's answers with addresses in one case: geth (and tephra)
/// checksum them, anvil writes them in lower case.
fn lower_case(value: &Value) -> Value {
    serde_json::from_str(&value.to_string().to_lowercase()).unwrap()
}

#[test]
fn block_transaction_and_pool_methods_answer_as_anvil_does() {
    let node = TephraNode::start("explorers-methods", "");
    let tephra = RpcClient::new(node.rpc_url.clone());
    let anvil = Anvil::start(&["--no-mining", "--order", "fifo"]);
    let sides = [&tephra, &anvil.client];
    next_block(&node, &tephra);
    let transfers: Vec<String> = (0..3).map(|nonce| ether_transfer(nonce, 1_000 + nonce)).collect();
    send_preconfirmed(&node, &transfers);
    send_mined(&anvil.client, &transfers);
    // Preconfirmed: its block number is known, its block sealed soon.
    let tephra_block =
        common::quantity(&tephra.rpc("eth_getTransactionByHash", json!([keccak_of(&transfers[0])]))["blockNumber"]);
    node.wait_for_block(tephra_block);
    let numbers = [tephra_block, head(&anvil.client)];

    for (side, number) in sides.iter().zip(numbers) {
        let hash = block_hash(side, number);
        let tag = json!(format!("{number:#x}"));
        assert_eq!(side.rpc("eth_getBlockTransactionCountByNumber", json!([tag])), "0x3");
        assert_eq!(side.rpc("eth_getBlockTransactionCountByHash", json!([hash])), "0x3");
        assert_eq!(side.rpc("eth_getUncleCountByBlockNumber", json!([tag])), "0x0");
        assert_eq!(side.rpc("eth_getUncleCountByBlockHash", json!([hash])), "0x0");
        assert_eq!(side.rpc("eth_getTransactionByBlockNumberAndIndex", json!([tag, "0x3"])), Value::Null);
        assert_eq!(side.rpc("eth_getTransactionByBlockHashAndIndex", json!([hash, "0x7"])), Value::Null);
    }
    let at = |side: &RpcClient, number: u64, index: u64| {
        let by_number =
            side.rpc("eth_getTransactionByBlockNumberAndIndex", json!([format!("{number:#x}"), format!("{index:#x}")]));
        let by_hash =
            side.rpc("eth_getTransactionByBlockHashAndIndex", json!([block_hash(side, number), format!("{index:#x}")]));
        assert_eq!(by_number, by_hash);
        // The price paid is the block's base fee, each chain's own, plus the
        // tip, which must agree.
        let base_fee =
            side.rpc("eth_getBlockByNumber", json!([format!("{number:#x}"), false]))["baseFeePerGas"].clone();
        let mut tx = normalised_tx(&by_number);
        tx["gasPrice"] = json!(common::quantity(&tx["gasPrice"]) - common::quantity(&base_fee));
        tx
    };
    for index in 0..3 {
        assert_eq!(at(&tephra, numbers[0], index), at(&anvil.client, numbers[1], index), "transaction {index}");
    }
    // A block this node does not have: geth's null (anvil answers an error).
    let unknown = json!(format!("{:#x}", numbers[0] + 1_000_000));
    assert_eq!(tephra.rpc("eth_getBlockTransactionCountByNumber", json!([unknown])), Value::Null);
    assert_eq!(tephra.rpc("eth_getUncleCountByBlockHash", json!([B256::ZERO])), Value::Null);

    // The pool: a transaction behind a nonce gap waits, queued, on both.
    let gapped = ether_transfer(5, 7);
    for side in sides {
        side.rpc("eth_sendRawTransaction", json!([gapped]));
    }
    let pools: Vec<[Value; 3]> = sides
        .iter()
        .map(|side| {
            ["txpool_status", "txpool_content", "txpool_inspect"].map(|method| lower_case(&side.rpc(method, json!([]))))
        })
        .collect();
    assert_eq!(pools[0][0], json!({"pending": "0x0", "queued": "0x1"}));
    assert_eq!(pools[0], pools[1]);

    for side in sides {
        assert_eq!(side.rpc("web3_sha3", json!(["0x68656c6c6f"])), json!(keccak256("hello")));
        assert_eq!(side.rpc("eth_blobBaseFee", json!([])), "0x1");
    }
    // anvil has no peers to count and no net_peerCount; a sequencer has none either.
    assert_eq!(tephra.rpc("net_peerCount", json!([])), "0x0");
}

/// A contract's creation from `contracts/NAME.bin` by dev key `key` at `nonce`.
fn creation(name: &str, key: usize, nonce: u64, constructor: &[u8]) -> (String, Address) {
    let code = std::fs::read_to_string(common::workspace_root().join(format!("contracts/{name}.bin"))).unwrap();
    let mut init = hex::decode(code.trim()).unwrap();
    init.extend_from_slice(constructor);
    let key = DevKey::dev(key);
    (signed(&key, nonce, TxKind::Create, init, 3_000_000), key.address().create(nonce))
}

fn call_tx(key: usize, nonce: u64, to: Address, input: Vec<u8>) -> String {
    signed(&DevKey::dev(key), nonce, TxKind::Call(to), input, 200_000)
}

/// Rounds of transactions, each in a block of its own on both chains:
/// contracts made, ETH and token transfers, mints, storage bumps.
fn state_rounds() -> (Vec<Vec<String>>, Address, Address) {
    let supply = U256::from(1_000_000).to_be_bytes::<32>();
    let (token_creation, token) = creation("Token", 0, 0, &supply);
    let (counter_creation, counter) = creation("Counter", 0, 1, &[]);
    let transfer = |nonce: u64, to: u8, value: u64| {
        let input =
            abi::calldata("transfer(address,uint256)", &[abi::word(Address::with_last_byte(to)), U256::from(value)]);
        call_tx(0, nonce, token, input)
    };
    let mint = |nonce: u64, to: u8| {
        let input = abi::calldata("mint(address,uint256)", &[abi::word(Address::with_last_byte(to)), U256::from(50)]);
        call_tx(3, nonce, token, input)
    };
    let bump = |nonce: u64| call_tx(2, nonce, counter, abi::calldata("bump()", &[]));
    let rounds = vec![
        vec![token_creation, counter_creation],
        vec![transfer(2, 0xa1, 10), transfer(3, 0xa2, 20), ether_transfer(0, 1_000), bump(0)],
        vec![transfer(4, 0xa1, 5), mint(0, 0xa3), ether_transfer(1, 2_000), bump(1), bump(2)],
        vec![transfer(5, 0xa3, 1), mint(1, 0xa1), ether_transfer(2, 3_000)],
    ];
    (rounds, token, counter)
}

/// Every state read the history serves, at block `at` of `side`: balances
/// (senders' with the fees they paid up to `at` added back: each chain's
/// base fee is its own), nonces, code, a storage slot, calls and a gas
/// estimate.
fn state_reads(
    side: &RpcClient,
    at: u64,
    token: Address,
    counter: Address,
    fees: &dyn Fn(Address) -> U256,
) -> Vec<Value> {
    let tag = json!(format!("{at:#x}"));
    let accounts =
        [DevKey::dev(0).address(), DevKey::dev(1).address(), DevKey::dev(2).address(), DevKey::dev(3).address()];
    let others = [Address::with_last_byte(0xb0), token, counter];
    let mut reads = Vec::new();
    for address in accounts.iter().chain(&others) {
        let balance = U256::from_str_radix(
            side.rpc("eth_getBalance", json!([address, tag])).as_str().unwrap().trim_start_matches("0x"),
            16,
        )
        .unwrap();
        reads.push(json!({"balance": address, "value": (balance + fees(*address)).to_string()}));
        reads.push(json!({"nonce": address, "value": side.rpc("eth_getTransactionCount", json!([address, tag]))}));
        reads.push(json!({"code": address, "value": side.rpc("eth_getCode", json!([address, tag]))}));
    }
    reads.push(json!({"count": side.rpc("eth_getStorageAt", json!([counter, "0x0", tag]))}));
    for holder in [DevKey::dev(0).address(), Address::with_last_byte(0xa1), Address::with_last_byte(0xa3)] {
        let balance_of = abi::calldata("balanceOf(address)", &[abi::word(holder)]);
        let call = json!({"to": token, "data": format!("0x{}", hex::encode(balance_of))});
        reads.push(
            json!({"balanceOf": holder, "value": side.call("eth_call", json!([call, tag])).unwrap_or_else(|e| e)}),
        );
    }
    let transfer =
        abi::calldata("transfer(address,uint256)", &[abi::word(Address::with_last_byte(0xa9)), U256::from(1)]);
    let estimate =
        json!({"from": DevKey::dev(0).address(), "to": token, "data": format!("0x{}", hex::encode(transfer))});
    reads.push(json!({"estimate": side.call("eth_estimateGas", json!([estimate, tag])).unwrap_or_else(|e| e)}));
    reads
}

/// The fees each sender paid in blocks up to and including `at`, from the
/// receipts of `hashes` on `side`.
fn fees_paid(side: &RpcClient, hashes: &[String], at: u64) -> std::collections::HashMap<Address, U256> {
    let mut fees = std::collections::HashMap::new();
    for hash in hashes {
        let receipt = side.rpc("eth_getTransactionReceipt", json!([hash]));
        if common::quantity(&receipt["blockNumber"]) > at {
            continue;
        }
        let from: Address = serde_json::from_value(receipt["from"].clone()).unwrap();
        let fee = U256::from(common::quantity(&receipt["gasUsed"]))
            * U256::from(common::quantity(&receipt["effectiveGasPrice"]));
        *fees.entry(from).or_insert(U256::ZERO) += fee;
    }
    fees
}

#[test]
fn state_at_earlier_blocks_answers_as_anvil_does() {
    let node = TephraNode::start("explorers-history", "");
    let tephra = RpcClient::new(node.rpc_url.clone());
    let anvil = Anvil::start(&["--no-mining", "--order", "fifo"]);
    let (rounds, token, counter) = state_rounds();
    // The block each chain was at before each round, then after the last.
    let mut blocks = vec![(next_block(&node, &tephra), head(&anvil.client))];
    let mut hashes = Vec::new();
    for round in &rounds {
        send_preconfirmed(&node, round);
        send_mined(&anvil.client, round);
        hashes.extend(round.iter().map(|raw| keccak_of(raw)));
        let tephra_block =
            common::quantity(&tephra.rpc("eth_getTransactionByHash", json!([keccak_of(&round[0])]))["blockNumber"]);
        node.wait_for_block(tephra_block);
        blocks.push((tephra_block, head(&anvil.client)));
        next_block(&node, &tephra);
    }
    for (round, (at_tephra, at_anvil)) in blocks.iter().enumerate() {
        let tephra_fees = fees_paid(&tephra, &hashes, *at_tephra);
        let anvil_fees = fees_paid(&anvil.client, &hashes, *at_anvil);
        let ours =
            state_reads(&tephra, *at_tephra, token, counter, &|a| tephra_fees.get(&a).copied().unwrap_or_default());
        let theirs =
            state_reads(&anvil.client, *at_anvil, token, counter, &|a| anvil_fees.get(&a).copied().unwrap_or_default());
        assert_eq!(ours, theirs, "after round {round} (tephra block {at_tephra}, anvil block {at_anvil})");
    }
    // The same reads by block hash (EIP-1898), on tephra.
    let (at, _) = blocks[2];
    let hash = block_hash(&tephra, at);
    let by_number = tephra.rpc("eth_getStorageAt", json!([counter, "0x0", format!("{at:#x}")]));
    assert_eq!(tephra.rpc("eth_getStorageAt", json!([counter, "0x0", {"blockHash": hash}])), by_number);
    assert_eq!(tephra.rpc("eth_getStorageAt", json!([counter, "0x0", {"blockNumber": format!("{at:#x}")}])), by_number);
}

#[test]
fn state_history_survives_a_restart_and_a_kill_9_and_names_its_window() {
    let mut node = TephraNode::start("explorers-history-restart", "[history]\nblocks_max = 1000\n");
    let tephra = RpcClient::new(node.rpc_url.clone());
    let (rounds, token, counter) = state_rounds();
    let mut blocks = vec![next_block(&node, &tephra)];
    let mut hashes = Vec::new();
    for round in &rounds {
        send_preconfirmed(&node, round);
        hashes.extend(round.iter().map(|raw| keccak_of(raw)));
        blocks.push(next_block(&node, &tephra));
    }
    let reads = |tephra: &RpcClient| -> Vec<Vec<Value>> {
        blocks.iter().map(|at| state_reads(tephra, *at, token, counter, &|_| U256::ZERO)).collect()
    };
    let before = reads(&tephra);
    assert_ne!(before[0], before[before.len() - 1], "the rounds changed the state");
    node.stop();
    node.spawn();
    assert_eq!(reads(&tephra), before, "after a restart");
    node.kill9();
    node.spawn();
    assert_eq!(reads(&tephra), before, "after a kill -9");
    // The history file gone: the next start replays the log from genesis
    // to fill it again.
    node.stop();
    std::fs::remove_file(node.dir.join("data/history.redb")).unwrap();
    node.spawn();
    assert_eq!(reads(&tephra), before, "rebuilt from the batch log");

    // Outside the window: an error naming it.
    let mut small = TephraNode::start("explorers-history-window", "[history]\nblocks_max = 2\n");
    let client = RpcClient::new(small.rpc_url.clone());
    let first = next_block(&small, &client);
    for _ in 0..5 {
        next_block(&small, &client);
    }
    let outside = client.call("eth_getBalance", json!([DevKey::dev(0).address(), format!("{first:#x}")])).unwrap_err();
    assert!(outside["message"].as_str().unwrap().contains("outside the state history"), "{outside}");
    let inside = head(&client) - 1;
    client.rpc("eth_getBalance", json!([DevKey::dev(0).address(), format!("{inside:#x}")]));
    small.stop();
}

fn keccak_of(raw: &str) -> String {
    keccak256(hex::decode(&raw[2..]).unwrap()).to_string()
}

#[test]
fn filters_are_bounded_per_client_and_expire() {
    let node = TephraNode::start("explorers-bounds", "[rpc]\nfilters_per_client_max = 2\nfilter_idle_timeout_s = 1\n");
    let kept = node.rpc("eth_newBlockFilter", json!([]));
    node.rpc("eth_newBlockFilter", json!([]));
    let refused = node.call("eth_newBlockFilter", json!([])).unwrap_err();
    assert_eq!(refused["code"], -32005, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("rpc.filters_per_client_max"), "{refused}");
    // Another client address still may.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_newBlockFilter", "params": []});
    let other = common::post_from(&runtime, "127.0.0.2:0", &node.rpc_url, &request);
    assert!(other["result"].is_string(), "{other}");
    // Polled within the timeout, one stays; the other expires and frees its place.
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(400));
        node.rpc("eth_getFilterChanges", json!([kept]));
    }
    node.rpc("eth_newBlockFilter", json!([]));
    let bad = node.call("eth_newFilter", json!([{"blockHash": B256::ZERO}])).unwrap_err();
    assert_eq!(bad["code"], -32602, "{bad}");
    assert!(bad["message"].as_str().unwrap().contains("blockHash is for eth_getLogs"), "{bad}");
    let bad = node.call("eth_newFilter", json!([{"topics": [[], [], [], [], []]}])).unwrap_err();
    assert_eq!(bad["code"], -32602, "{bad}");

    // A filter the kept blocks left behind is told so once, then goes on
    // from the oldest kept block.
    let short = TephraNode::start("explorers-behind", "[rpc]\nhistory_blocks_max = 2\n");
    let id = short.rpc("eth_newBlockFilter", json!([]));
    let installed_at = common::quantity(&short.rpc("eth_blockNumber", json!([])));
    short.wait_for_block(installed_at + 4);
    let behind = short.call("eth_getFilterChanges", json!([id])).unwrap_err();
    let message = behind["message"].as_str().unwrap();
    assert!(message.contains("fell behind") && message.contains("goes on from block"), "{behind}");
    let hashes = short.rpc("eth_getFilterChanges", json!([id]));
    assert!(!hashes.as_array().unwrap().is_empty(), "{hashes}");
}

/// An ethers listener started before `txs` transfers; waits for its filter.
struct Listener {
    lines: mpsc::Receiver<String>,
    child: std::process::Child,
}

impl Listener {
    fn start(node: &TephraNode, token: Address, expected: usize) -> Self {
        let mut child = Command::new("node")
            .arg(common::workspace_root().join("cli/tests/clients/ethers-listener.mjs"))
            .env("TEPHRA_RPC", &node.rpc_url)
            .env("TOKEN", token.to_string())
            .env("EXPECTED", expected.to_string())
            .current_dir(common::workspace_root())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node runs");
        let stdout = child.stdout.take().expect("piped");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        let listener = Self { lines, child };
        listener.line_starting("ready ", Duration::from_secs(60));
        listener
    }

    /// The rest of the first line starting with `prefix`; the panic names
    /// the last other line (its count heard, or ethers' failed poll).
    fn line_starting(&self, prefix: &str, limit: Duration) -> String {
        let deadline = std::time::Instant::now() + limit;
        let mut last = String::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line[prefix.len()..].to_string(),
                Ok(line) => last = line,
                Err(_) => panic!("the ethers listener printed no {prefix:?} line within {limit:?}; its last: {last:?}"),
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_ethers_listener_hears_every_transfer_once_across_a_restart_and_a_kill_9() {
    const TRANSFERS: usize = 10_000;
    let mut node = TephraNode::start("explorers-ethers", "");
    let (creation, token) = token_creation();
    send_preconfirmed(&node, std::slice::from_ref(&creation));
    // Sealed before the listener starts: a filter hears the blocks sealed
    // after it, and the mint's is not one of them.
    let created = node.rpc("eth_getTransactionByHash", json!([keccak_of(&creation)]));
    node.wait_for_block(common::quantity(&created["blockNumber"]));
    let listener = Listener::start(&node, token, TRANSFERS);
    let transfers: Vec<String> = (1..=TRANSFERS as u64).map(|nonce| token_transfer(token, nonce)).collect();
    let (first, rest) = transfers.split_at(3_000);
    let (second, third) = rest.split_at(3_000);
    send_preconfirmed(&node, first);
    node.stop();
    node.spawn();
    send_preconfirmed(&node, second);
    // Let a few polls pass, then kill with no chance to flush anything.
    std::thread::sleep(Duration::from_millis(500));
    node.kill9();
    node.spawn();
    send_preconfirmed(&node, third);
    let result: Value = serde_json::from_str(&listener.line_starting("result ", Duration::from_secs(120))).unwrap();
    assert_eq!(result["duplicates"], json!([]), "{result}");
    assert_eq!(result["heard"], TRANSFERS, "{result}");
    assert_eq!(result["distinct"], TRANSFERS, "{result}");
}

/// Dev key 2's transaction to `to` with `value` wei, at `nonce`.
fn valued_call(nonce: u64, to: TxKind, input: Vec<u8>, value: u64) -> String {
    let fees = TxEip1559 { max_fee_per_gas: 100_000_000_000, max_priority_fee_per_gas: 1, ..Default::default() };
    let tx = TxEip1559 { nonce, gas_limit: 1_000_000, to, input: Bytes::from(input), value: U256::from(value), ..fees };
    sign(&DevKey::dev(2), tx)
}

/// The explorer workload for traces: a factory making, paying, calling and
/// destroying children, reverts with a reason and a custom error (caught
/// and bubbled out), a static call, a token and an ether transfer. Each is
/// sent alone, so that each has a block of its own on both chains (anvil
/// reports a mined transaction's gas as its block's cumulative gas).
fn trace_workload() -> (Vec<String>, Address) {
    let code = std::fs::read_to_string(common::workspace_root().join("contracts/Factory.bin")).unwrap();
    let factory = DevKey::dev(2).address().create(0);
    let string_arg = |selector: &str, text: &str| {
        let mut data = abi::calldata(selector, &[U256::from(32), U256::from(text.len())]);
        let mut padded = text.as_bytes().to_vec();
        padded.resize(32, 0);
        data.extend_from_slice(&padded);
        data
    };
    let at = TxKind::Call(factory);
    let txs = vec![
        valued_call(0, TxKind::Create, hex::decode(code.trim()).unwrap(), 0),
        valued_call(1, at, abi::calldata("make(bytes32)", &[U256::ZERO]), 1_000),
        valued_call(2, at, abi::calldata("make(bytes32)", &[U256::from(7)]), 501),
        valued_call(3, at, string_arg("tryFail(string)", "caught inside"), 0),
        valued_call(4, at, string_arg("mustFail(string)", "denied by the child"), 0),
        valued_call(5, at, abi::calldata("mustBeAtLeast(uint256)", &[U256::from(3)]), 0),
        valued_call(6, at, abi::calldata("makeAndDestroy()", &[]), 7),
        valued_call(7, at, abi::calldata("destroyLast()", &[]), 0),
        valued_call(8, at, abi::calldata("readLast()", &[]), 0),
        valued_call(9, TxKind::Call(Address::with_last_byte(0xb1)), Vec::new(), 12_345),
    ];
    (txs, factory)
}

/// A trace without what legitimately differs between the chains: block
/// hashes and numbers, the balances of the sender and the coinbase (each
/// chain's base fee is its own) wherever they appear, and the order of an
/// access list's entries (a set: geth's order is a map's). anvil's
/// callTracer gives the top call the gas left after the intrinsic gas,
/// geth and reth (revm-inspectors' `DebugInspector`, which tephra uses)
/// the transaction's gas limit: the test checks tephra's and drops both.
fn normalised_trace(trace: &Value, sender: Address, coinbase: Address) -> Value {
    let accounts = [sender.to_string().to_lowercase(), coinbase.to_string().to_lowercase()];
    match trace {
        Value::Object(object) => {
            let mut out = serde_json::Map::new();
            for (key, value) in object {
                if ["blockHash", "blockNumber"].contains(&key.as_str()) {
                    continue;
                }
                let value = if accounts.contains(&key.to_lowercase()) {
                    let mut account = normalised_trace(value, sender, coinbase);
                    if let Some(account) = account.as_object_mut() {
                        account.remove("balance");
                    }
                    account
                } else {
                    normalised_trace(value, sender, coinbase)
                };
                out.insert(key.clone(), value);
            }
            if let Some(Value::Array(entries)) = out.get_mut("accessList") {
                entries.sort_by_key(|entry| entry["address"].to_string());
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| normalised_trace(v, sender, coinbase)).collect()),
        other => other.clone(),
    }
}

/// Sends `raw` alone and waits until its block is sealed; its receipt.
fn send_alone(node: &TephraNode, client: &RpcClient, raw: &str) -> Value {
    let receipt = client.rpc("eth_sendRawTransactionSync", json!([raw]));
    node.wait_for_block(common::quantity(&receipt["blockNumber"]));
    receipt
}

/// tephra and anvil (`--steps-tracing`, tephra's coinbase) with the trace
/// workload on both, each transaction in a block of its own with the same
/// time on both chains.
struct TwoChains {
    /// Running while the chains are compared.
    node: TephraNode,
    tephra: RpcClient,
    anvil: Anvil,
    txs: Vec<String>,
    /// Each transaction's block: (tephra's, anvil's).
    blocks: Vec<(u64, u64)>,
    factory: Address,
    sender: Address,
    coinbase: Address,
}

impl TwoChains {
    fn start(name: &str) -> Self {
        let node = TephraNode::start(name, "");
        let tephra = RpcClient::new(node.rpc_url.clone());
        let anvil = Anvil::start(&["--no-mining", "--order", "fifo", "--steps-tracing"]);
        // Genesis has no beneficiary; the blocks after it have tephra's.
        node.wait_for_block(1);
        let miner = tephra.rpc("eth_getBlockByNumber", json!(["0x1", false]))["miner"].clone();
        let coinbase: Address = serde_json::from_value(miner).unwrap();
        anvil.client.rpc("anvil_setCoinbase", json!([coinbase]));
        let (txs, factory) = trace_workload();
        let mut blocks = Vec::new();
        for raw in &txs {
            let receipt = send_alone(&node, &tephra, raw);
            // anvil's block gets the time of tephra's.
            let block = tephra.rpc("eth_getBlockByNumber", json!([receipt["blockNumber"], false]));
            anvil.client.rpc("evm_setNextBlockTimestamp", json!([common::quantity(&block["timestamp"])]));
            send_mined(&anvil.client, std::slice::from_ref(raw));
            blocks.push((common::quantity(&receipt["blockNumber"]), head(&anvil.client)));
        }
        Self { node, tephra, anvil, txs, blocks, factory, sender: DevKey::dev(2).address(), coinbase }
    }
}

#[test]
fn traces_answer_as_anvil_does_on_the_same_transactions() {
    let chains = TwoChains::start("explorers-traces");
    let TwoChains { tephra, anvil, txs, blocks, factory, sender, coinbase, .. } = &chains;
    let (factory, sender, coinbase) = (*factory, *sender, *coinbase);
    let tracers = [
        json!({"tracer": "callTracer", "tracerConfig": {"withLog": true}}),
        json!({"tracer": "callTracer", "tracerConfig": {"onlyTopCall": true}}),
        json!({"tracer": "prestateTracer"}),
        json!({"tracer": "prestateTracer", "tracerConfig": {"diffMode": true}}),
        json!({"tracer": "4byteTracer"}),
        json!({}),
        json!({"enableMemory": true, "disableStack": true}),
        json!({"disableStorage": true, "enableReturnData": true}),
    ];
    let differences = std::cell::RefCell::new(Vec::new());
    let same = |ours: Value, theirs: Value, what: &str| {
        let (ours, theirs) = (normalised_trace(&ours, sender, coinbase), normalised_trace(&theirs, sender, coinbase));
        if let Some(difference) = first_difference(&ours, &theirs, "") {
            differences.borrow_mut().push(format!("{what}: {difference}"));
        }
    };
    for (raw, (at_tephra, at_anvil)) in txs.iter().zip(blocks.iter()) {
        let hash = keccak_of(raw);
        for tracer in &tracers {
            let mut ours = tephra.rpc("debug_traceTransaction", json!([hash, tracer]));
            let mut theirs = anvil.client.rpc("debug_traceTransaction", json!([hash, tracer]));
            if tracer["tracer"] == "callTracer" {
                assert_eq!(ours["gas"], "0xf4240", "the top call's gas is the transaction's limit");
                (ours["gas"], theirs["gas"]) = (Value::Null, Value::Null);
            }
            same(ours, theirs, &format!("debug_traceTransaction {hash} {tracer}"));
        }
        let by = |side: &RpcClient, at: u64| {
            let call_tracer = json!({"tracer": "callTracer", "tracerConfig": {"withLog": true}});
            let mut by_number = side.rpc("debug_traceBlockByNumber", json!([format!("{at:#x}"), call_tracer]));
            let by_hash = side.rpc("debug_traceBlockByHash", json!([block_hash(side, at), call_tracer]));
            assert_eq!(by_number, by_hash);
            by_number[0]["result"]["gas"] = Value::Null;
            let replayed = side
                .rpc("trace_replayBlockTransactions", json!([format!("{at:#x}"), ["trace", "stateDiff", "vmTrace"]]));
            json!({
                "debug_traceBlock": by_number,
                "trace_transaction": side.rpc("trace_transaction", json!([hash])),
                "trace_block": side.rpc("trace_block", json!([format!("{at:#x}")])),
                "trace_replayBlockTransactions": replayed,
            })
        };
        same(by(tephra, *at_tephra), by(&anvil.client, *at_anvil), &format!("block traces of {hash}"));
    }
    // Calls and access lists at earlier blocks: after the first child,
    // after the second, and at the tip.
    // An explicit gas limit: anvil's default is its block's, tephra's the
    // per-transaction cap (EIP-7825).
    let call = |input: Vec<u8>, value: u64| json!({"from": sender, "to": factory, "gas": "0x100000", "value": format!("{value:#x}"), "data": format!("0x{}", hex::encode(input))});
    let (read_last, make) =
        (call(abi::calldata("readLast()", &[]), 0), call(abi::calldata("make(bytes32)", &[U256::from(9)]), 16));
    for (at_tephra, at_anvil) in [blocks[1], blocks[2], (head(tephra), head(&anvil.client))] {
        for call in [&read_last, &make] {
            let tracer = json!({"tracer": "callTracer", "tracerConfig": {"withLog": true}});
            let mut ours = tephra.rpc("debug_traceCall", json!([call, format!("{at_tephra:#x}"), tracer]));
            let mut theirs = anvil.client.rpc("debug_traceCall", json!([call, format!("{at_anvil:#x}"), tracer]));
            assert_eq!(ours["gas"], "0x100000", "the top call's gas is the call's limit");
            (ours["gas"], theirs["gas"]) = (Value::Null, Value::Null);
            same(ours, theirs, &format!("debug_traceCall at {at_tephra}/{at_anvil}: {call}"));
            let ours = tephra.rpc("eth_createAccessList", json!([call, format!("{at_tephra:#x}")]));
            let theirs = anvil.client.rpc("eth_createAccessList", json!([call, format!("{at_anvil:#x}")]));
            same(ours, theirs, &format!("eth_createAccessList at {at_tephra}/{at_anvil}: {call}"));
        }
    }
    let differences = differences.into_inner();
    assert!(differences.is_empty(), "{} differences:\n{}", differences.len(), differences.join("\n"));
}

/// Where two JSON values first differ, as a path and both sides; none if
/// they are equal.
fn first_difference(ours: &Value, theirs: &Value, path: &str) -> Option<String> {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter().find_map(|key| {
                let (x, y) = (a.get(key).unwrap_or(&Value::Null), b.get(key).unwrap_or(&Value::Null));
                first_difference(x, y, &format!("{path}.{key}"))
            })
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            a.iter().zip(b).enumerate().find_map(|(i, (x, y))| first_difference(x, y, &format!("{path}[{i}]")))
        }
        (a, b) if a == b => None,
        (a, b) => {
            let cut = |v: &Value| v.to_string().chars().take(300).collect::<String>();
            Some(format!("{path}: tephra {} / anvil {}", cut(a), cut(b)))
        }
    }
}

/// A receipt, transaction or log without what differs between the chains:
/// block hashes and numbers, anvil's `blockTimestamp` (tephra's logs do not
/// carry it), the price (each chain's base fee), and
/// anvil's blob gas price on every receipt (geth's, and tephra's, only on
/// blob transactions, which tephra refuses).
fn normalised_record(value: &Value) -> Value {
    match value {
        Value::Object(object) => Value::Object(
            object
                .iter()
                .filter(|(key, _)| {
                    !["blockHash", "blockNumber", "blockTimestamp", "effectiveGasPrice", "gasPrice", "blobGasPrice"]
                        .contains(&key.as_str())
                })
                .map(|(key, value)| (key.clone(), normalised_record(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(normalised_record).collect()),
        other => other.clone(),
    }
}

#[test]
fn otterscan_answers_as_anvil_does_on_the_same_transactions() {
    let chains = TwoChains::start("explorers-otterscan");
    let TwoChains { node, tephra, anvil, txs, blocks, factory, sender, .. } = &chains;
    let anvil = &anvil.client;
    let differences = std::cell::RefCell::new(Vec::new());
    let same = |ours: Value, theirs: Value, what: &str| {
        if let Some(difference) = first_difference(&ours, &theirs, "") {
            differences.borrow_mut().push(format!("{what}: {difference}"));
        }
    };
    same(tephra.rpc("ots_getApiLevel", json!([])), anvil.rpc("ots_getApiLevel", json!([])), "api level");
    for (nonce, (raw, (at_tephra, at_anvil))) in txs.iter().zip(blocks.iter()).enumerate() {
        let hash = keccak_of(raw);
        for method in ["ots_getInternalOperations", "ots_getTransactionError"] {
            same(tephra.rpc(method, json!([hash])), anvil.rpc(method, json!([hash])), &format!("{method} {hash}"));
        }
        // anvil lists only the calls, with a static call's value as 0;
        // Erigon's (and tephra's) list the creations and self-destructs too,
        // with no value for a static or delegate call.
        let calls_only = |entries: Value| -> Value {
            let kinds = ["CALL", "STATICCALL", "DELEGATECALL", "CALLCODE"];
            let mut calls: Vec<Value> = entries
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| kinds.contains(&e["type"].as_str().unwrap()))
                .cloned()
                .collect();
            for call in &mut calls {
                if call["type"] == "STATICCALL" || call["type"] == "DELEGATECALL" {
                    call["value"] = Value::Null;
                }
            }
            Value::Array(calls)
        };
        let ours = tephra.rpc("ots_traceTransaction", json!([hash]));
        let theirs = anvil.rpc("ots_traceTransaction", json!([hash]));
        same(calls_only(ours), calls_only(theirs), &format!("ots_traceTransaction {hash}"));
        let by_nonce = json!([sender, format!("{nonce:#x}")]);
        same(
            tephra.rpc("ots_getTransactionBySenderAndNonce", by_nonce.clone()),
            anvil.rpc("ots_getTransactionBySenderAndNonce", by_nonce),
            &format!("ots_getTransactionBySenderAndNonce {nonce}"),
        );
        let (ours, theirs) = (
            tephra.rpc("ots_getBlockTransactions", json!([at_tephra, 0, 10])),
            anvil.rpc("ots_getBlockTransactions", json!([at_anvil, 0, 10])),
        );
        same(
            normalised_record(&ours["receipts"]),
            normalised_record(&theirs["receipts"]),
            &format!("receipts of {hash}"),
        );
        same(
            normalised_record(&ours["fullblock"]["transactions"]),
            normalised_record(&theirs["fullblock"]["transactions"]),
            &format!("transactions of {hash}"),
        );
        same(ours["fullblock"]["transactionCount"].clone(), json!(1), "transactionCount");
        let (ours, theirs) = (
            tephra.rpc("ots_getBlockDetails", json!([at_tephra])),
            anvil.rpc("ots_getBlockDetails", json!([at_anvil])),
        );
        same(ours["issuance"].clone(), theirs["issuance"].clone(), "issuance");
        // What the same transactions at the same time make the same: the
        // roots of transactions and receipts, the bloom, time, miner and gas.
        for key in ["transactionsRoot", "receiptsRoot", "logsBloom", "timestamp", "miner", "gasUsed"] {
            same(ours["block"][key].clone(), theirs["block"][key].clone(), &format!("ots_getBlockDetails {key}"));
        }
        same(ours["block"]["transactionCount"].clone(), theirs["block"]["transactionCount"].clone(), "count");
        let keys =
            |v: &Value| v["block"].as_object().unwrap().keys().cloned().collect::<std::collections::BTreeSet<_>>();
        same(
            json!(keys(&ours).len() >= keys(&theirs).len() - 1),
            json!(true),
            &format!("block details' fields {:?} {:?}", keys(&ours), keys(&theirs)),
        );
        for (side, at) in [(tephra, at_tephra), (anvil, at_anvil)] {
            let receipt = side.rpc("eth_getTransactionReceipt", json!([hash]));
            let fees = U256::from(common::quantity(&receipt["gasUsed"]))
                * U256::from(common::quantity(&receipt["effectiveGasPrice"]));
            let details = side.rpc("ots_getBlockDetailsByHash", json!([block_hash(side, *at)]));
            same(details["totalFees"].clone(), json!(fees), "totalFees: the block's fees");
        }
        for address in [*factory, *sender, Address::with_last_byte(0xb1)] {
            same(
                tephra.rpc("ots_hasCode", json!([address, format!("{at_tephra:#x}")])),
                anvil.rpc("ots_hasCode", json!([address, format!("{at_anvil:#x}")])),
                &format!("ots_hasCode {address} at {at_tephra}"),
            );
        }
    }
    // Contracts made by a key (the factory) and by a contract (its children).
    let children: Vec<Address> =
        (1..=2).map(|nonce| factory.create(nonce)).chain([Address::with_last_byte(0xee)]).collect();
    for address in [*factory].into_iter().chain(children) {
        same(
            tephra.rpc("ots_getContractCreator", json!([address])),
            anvil.rpc("ots_getContractCreator", json!([address])),
            &format!("ots_getContractCreator {address}"),
        );
    }
    // An address's history, a page at a time, both ways.
    let child = factory.create(1);
    for address in [*sender, *factory, child, Address::with_last_byte(0xb1)] {
        for (method, from, size) in [
            ("ots_searchTransactionsBefore", 0, 3),
            ("ots_searchTransactionsBefore", 0, 25),
            ("ots_searchTransactionsAfter", 0, 3),
            ("ots_searchTransactionsAfter", 0, 25),
        ] {
            let (ours, theirs) =
                (tephra.rpc(method, json!([address, from, size])), anvil.rpc(method, json!([address, from, size])));
            let hashes =
                |page: &Value| page["txs"].as_array().unwrap().iter().map(|t| t["hash"].clone()).collect::<Vec<_>>();
            same(json!(hashes(&ours)), json!(hashes(&theirs)), &format!("{method} {address} {size}"));
            same(
                normalised_record(&ours["receipts"]),
                normalised_record(&theirs["receipts"]),
                &format!("{method} receipts"),
            );
        }
    }
    // erigon_getHeaderByNumber: the header alone, as Erigon answers it (anvil
    // answers the whole block), with tephra's block signature once made.
    let (at_tephra, at_anvil) = *blocks.last().unwrap();
    node.wait_for_signed_block(at_tephra);
    let header = tephra.rpc("erigon_getHeaderByNumber", json!([at_tephra]));
    let mut expected = tephra.rpc("eth_getBlockByNumber", json!([at_tephra, false]));
    for body in ["transactions", "uncles", "withdrawals", "size"] {
        expected.as_object_mut().unwrap().remove(body);
    }
    same(header.clone(), expected, "erigon_getHeaderByNumber: the block's header fields and signature");
    let theirs = anvil.rpc("erigon_getHeaderByNumber", json!([at_anvil]));
    for key in ["transactionsRoot", "receiptsRoot", "logsBloom", "timestamp", "miner", "gasUsed"] {
        same(header[key].clone(), theirs[key].clone(), &format!("erigon_getHeaderByNumber {key}"));
    }
    for side in [tephra, anvil] {
        same(side.rpc("erigon_getHeaderByNumber", json!(["pending"])), Value::Null, "no header before the seal");
    }
    let differences = differences.into_inner();
    assert!(differences.is_empty(), "{} differences:\n{}", differences.len(), differences.join("\n"));
}

#[test]
fn traces_are_bounded_and_a_struct_log_is_cut_at_its_limit() {
    let node = TephraNode::start("explorers-trace-bounds", "[trace]\nsteps_max = 200\nrecorded_bytes_max = 2048\n");
    let tephra = RpcClient::new(node.rpc_url.clone());
    let (txs, _) = trace_workload();
    for raw in &txs[..2] {
        send_alone(&node, &tephra, raw);
    }
    // geth's `limit`: the log is cut, the rest of the answer is whole.
    let deploy = keccak_of(&txs[0]);
    let whole = tephra.rpc("debug_traceTransaction", json!([deploy, {}]));
    let limit = 5;
    assert!(whole["structLogs"].as_array().unwrap().len() > limit, "{whole}");
    let cut = tephra.rpc("debug_traceTransaction", json!([deploy, {"limit": limit}]));
    assert_eq!(cut["structLogs"].as_array().unwrap()[..], whole["structLogs"].as_array().unwrap()[..limit]);
    for field in ["gas", "failed", "returnValue"] {
        assert_eq!(cut[field], whole[field], "{field}");
    }
    // geth's other built-in tracers answer too (anvil gives them no answer).
    let flat = tephra.rpc("debug_traceTransaction", json!([deploy, {"tracer": "flatCallTracer"}]));
    assert_eq!(flat.as_array().unwrap().len(), 1, "{flat}");
    assert_eq!(flat[0]["type"], "create", "{flat}");
    let mux = json!({"tracer": "muxTracer", "tracerConfig": {"callTracer": {}, "4byteTracer": null}});
    let mux = tephra.rpc("debug_traceTransaction", json!([deploy, mux]));
    assert_eq!(mux["callTracer"]["type"], "CREATE", "{mux}");
    assert!(mux["4byteTracer"].is_object(), "{mux}");
    // Past trace.steps_max: an error, and the node goes on.
    let hash = keccak_of(&txs[1]);
    for over in [
        tephra.call("debug_traceTransaction", json!([hash, {}])),
        tephra.call("debug_traceTransaction", json!([hash, {"tracer": "callTracer"}])),
        tephra.call("trace_transaction", json!([hash])),
    ] {
        let over = over.unwrap_err();
        assert_eq!(over["code"], -32005, "{over}");
        assert!(over["message"].as_str().unwrap().contains("trace.steps_max"), "{over}");
    }
    // Past trace.recorded_bytes_max (the factory's code, as a struct log's
    // memory, passes 2 KiB): an error naming it.
    let over = tephra.call("debug_traceTransaction", json!([deploy, {"enableMemory": true}])).unwrap_err();
    assert_eq!(over["code"], -32005, "{over}");
    assert!(over["message"].as_str().unwrap().contains("trace.recorded_bytes_max"), "{over}");
    // Bad input: errors, never a stalled node.
    let unknown = tephra.call("debug_traceTransaction", json!([B256::ZERO, {}])).unwrap_err();
    assert!(unknown["message"].as_str().unwrap().contains("not found"), "{unknown}");
    let bad_tracer = tephra.call("debug_traceTransaction", json!([hash, {"tracer": "noSuchTracer"}])).unwrap_err();
    assert_eq!(bad_tracer["code"], -32602, "{bad_tracer}");
    let pending = tephra.call("trace_block", json!(["pending"])).unwrap_err();
    assert_eq!(pending["code"], -32602, "{pending}");
    assert_eq!(tephra.rpc("trace_block", json!(["0xffffff"])), Value::Null);
    let genesis = tephra.call("debug_traceBlockByNumber", json!(["0x0", {}])).unwrap_err();
    assert!(genesis["message"].as_str().unwrap().contains("genesis"), "{genesis}");
    send_alone(&node, &tephra, &txs[2]);
}
