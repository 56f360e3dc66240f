//! The OP Stack mode end to end, checked by code that is not tephra's: a
//! real L1 (anvil) with the deposit contract, `tephra devnet --setup-only`
//! writing the chain's files, tephra sequencing it, and kona (oracle/, its
//! own workspace) deriving every block from the same L1 and executing it to
//! the same hash and output root.
//!
//! The workload: deposits (a mint with value, a creation that reverts on
//! L2, a call that runs out of gas: a failed deposit), transfers, a
//! contract deployed and called, a reverting call. Then tephra is killed
//! (-9) with deposits in flight and restarted: nothing lost, nothing twice,
//! and kona still agrees. viem's OP Stack actions then read the same chain
//! (cli/tests/clients/viem-op.mjs).
//!
//! Then the L1's own failures: an outage past the sequencer drift, and a
//! reorg below the origins of unsafe L2 blocks (anvil_reorg), which tephra
//! rebuilds on the new L1 chain with their user transactions, kona agreeing
//! before and after a kill -9.

mod op;

use std::{
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use alloy_primitives::{Address, TxKind, U256, address};
use op::*;
use serde_json::{Value, json};
use tephra_exec::dev::DevKey;
use tephra_testkit::{
    abi::{calldata, deposit_transaction_call, word},
    free_port, fresh_dir,
    rpc::{RpcClient, quantity},
    tephra::TephraProcess,
    wait_until, workspace_root,
};

#[test]
fn kona_derives_and_executes_every_block_through_a_kill_9() {
    if !needs() {
        return;
    }
    let dir = fresh_dir("op-stack-kona");
    // L1 blocks every 3 s: an L1 origin spans three L2 blocks, so that viem's
    // fee estimate and the block it lands in share their L1 fee inputs.
    let l1 = L1::start(3, &[]);
    let (portal, config) = setup(&dir, &l1);
    let flashblocks_port = free_port();
    let mut node = TephraProcess::builder(env!("CARGO_BIN_EXE_tephra"), dir.join("node"))
        .config(&config)
        .config(&format!("[rpc]\nflashblocks_listen = \"127.0.0.1:{flashblocks_port}\"\n"))
        // A snapshot every 4 blocks: the restart reads the blocks before it back from the log.
        .config("[block]\nsnapshot_interval_blocks = 4\n")
        .log_file("tephra.log")
        .start()
        .expect("tephra starts in OP mode");
    let flashblocks = FlashblocksFeed::connect(flashblocks_port);
    let mut l2 = L2::new(node.rpc_url());

    // L2: a transfer, a contract deployed and called, a call that reverts,
    // and the endless loop a deposit will call.
    let counter_init = hex::decode(include_str!("../../contracts/Counter.bin").trim()).unwrap();
    assert_eq!(l2.send(0, TxKind::Call(RECIPIENT), ETHER / 10, Vec::new())["status"], "0x1");
    let deployed = l2.send(1, TxKind::Create, 0, counter_init);
    let counter: Address = deployed["contractAddress"].as_str().unwrap().parse().unwrap();
    assert_eq!(l2.send(1, TxKind::Call(counter), 0, calldata("bump()", &[]))["status"], "0x1");
    assert_eq!(l2.send(2, TxKind::Call(counter), 0, calldata("nothing()", &[]))["status"], "0x0", "no such function");
    let spin: Address =
        l2.send(2, TxKind::Create, 0, DEPLOY_SPIN.to_vec())["contractAddress"].as_str().unwrap().parse().unwrap();
    let l2_tx_count = 5;

    // L1: deposits of every kind, in one L1 block or a few.
    let mint =
        l1.send(0, portal, 2 * ETHER, deposit_transaction_call(RECIPIENT, U256::from(ETHER), 100_000, false, &[]));
    l1.send(1, portal, ETHER, deposit_transaction_call(Address::ZERO, U256::ZERO, 100_000, true, &REVERTING_INIT));
    let last = l1.send(2, portal, ETHER, deposit_transaction_call(spin, U256::ZERO, 60_000, false, &[]));
    let deposit_block = quantity(&last["blockNumber"]);
    let head = wait_for_origin(&l1, &l2.client, deposit_block);
    assert_eq!(balance(&l2.client, RECIPIENT), U256::from(ETHER + ETHER / 10), "the deposit's value, once");
    assert!(!mint["logs"].as_array().unwrap().is_empty());

    let (blocks, deposits, users) = kona_counts(&kona_verify(&dir, &l1, node.rpc_url(), head));
    assert_eq!(blocks, head);
    assert_eq!(deposits, head + 3, "an L1-info deposit a block and the three user deposits");
    assert_eq!(users, l2_tx_count);
    flashblocks.check_against(&l2.client, head);
    traces_replay_as_sealed(&l2.client, head);

    // kill -9 with a deposit in flight; a restart takes it, once.
    let late =
        l1.send(0, portal, ETHER, deposit_transaction_call(LATE_RECIPIENT, U256::from(ETHER / 2), 100_000, false, &[]));
    // Every deposit receipt so far, as a restart must serve it again: the
    // blocks before its snapshot are read back from the log, not re-executed.
    let deposit_receipts = |to: u64| -> Vec<Value> {
        (1..=to)
            .flat_map(|n| l2.client.rpc("eth_getBlockReceipts", json!([format!("{n:#x}")])).as_array().unwrap().clone())
            .filter(|r| r["type"] == "0x7e")
            .map(|r| {
                json!([
                    r["transactionHash"],
                    r["status"],
                    r["cumulativeGasUsed"],
                    r["depositNonce"],
                    r["depositReceiptVersion"],
                    r["logs"]
                ])
            })
            .collect()
    };
    let before = deposit_receipts(head);
    node.kill9();
    node.start().expect("tephra restarts from its log");
    assert_eq!(deposit_receipts(head), before, "deposit receipts read back from the log as they were served");
    let head = wait_for_origin(&l1, &l2.client, quantity(&late["blockNumber"]));
    assert_eq!(balance(&l2.client, LATE_RECIPIENT), U256::from(ETHER / 2), "the late deposit, once");
    assert_eq!(balance(&l2.client, RECIPIENT), U256::from(ETHER + ETHER / 10), "the first, still once");
    let (_, deposits, _) = kona_counts(&kona_verify(&dir, &l1, node.rpc_url(), head));
    assert_eq!(deposits, head + 4, "every user deposit exactly once across the restart");

    viem_op_stack(&l1, node.rpc_url(), portal);
}

/// Every block's traces replay it as it was sealed (OP Stack: the L1-info
/// deposit, user deposits, failed ones among them, and the L1 data fee):
/// one call trace per transaction, each with its receipt's gas and outcome.
fn traces_replay_as_sealed(l2: &RpcClient, head: u64) {
    let tracer = json!({"tracer": "callTracer"});
    for n in 1..=head {
        let number = format!("{n:#x}");
        let traces = l2.rpc("debug_traceBlockByNumber", json!([number, tracer]));
        let receipts = l2.rpc("eth_getBlockReceipts", json!([number]));
        let (traces, receipts) = (traces.as_array().unwrap(), receipts.as_array().unwrap());
        assert_eq!(traces.len(), receipts.len(), "block {n}");
        for (trace, receipt) in traces.iter().zip(receipts) {
            assert_eq!(trace["txHash"], receipt["transactionHash"], "block {n}");
            assert_eq!(trace["result"]["gasUsed"], receipt["gasUsed"], "block {n}: {trace}");
            let failed = trace["result"].get("error").is_some();
            assert_eq!(failed, receipt["status"] == "0x0", "block {n}: {trace}");
        }
    }
}

/// A WebSocket client of `address` (host:port) in a thread of its own: it
/// sends `request`, if any, once connected, then keeps every text message it
/// receives until the connection ends.
fn websocket_messages(address: String, request: Option<String>) -> Arc<Mutex<Vec<String>>> {
    let messages = Arc::new(Mutex::new(Vec::new()));
    let sink = messages.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            use tokio_util::compat::TokioAsyncReadCompatExt;
            let socket = tokio::net::TcpStream::connect(address.as_str()).await.expect("the WebSocket listens");
            let mut client = soketto::handshake::Client::new(socket.compat(), &address, "/");
            let accepted = client.handshake().await.expect("a WebSocket handshake");
            assert!(matches!(accepted, soketto::handshake::ServerResponse::Accepted { .. }));
            let (mut sender, mut receiver) = client.into_builder().finish();
            if let Some(request) = request {
                sender.send_text(request).await.expect("the request is sent");
                sender.flush().await.expect("the request is sent");
            }
            let mut data = Vec::new();
            while receiver.receive_data(&mut data).await.is_ok() {
                sink.lock().unwrap().push(String::from_utf8(std::mem::take(&mut data)).expect("text"));
            }
        });
    });
    messages
}

/// The Flashblocks stream, read as rollup-boost's consumers read it: each
/// message an op-alloy `OpFlashblockPayload`.
struct FlashblocksFeed {
    messages: Arc<Mutex<Vec<String>>>,
}

impl FlashblocksFeed {
    fn connect(port: u16) -> Self {
        Self { messages: websocket_messages(format!("127.0.0.1:{port}"), None) }
    }

    /// Every block up to `head` since the subscription streamed whole:
    /// indices from 0, `base` on the first only, the transactions of all its
    /// flashblocks the block's, the closing one's hash the block's.
    fn check_against(&self, l2: &RpcClient, head: u64) {
        use op_alloy_rpc_types_engine::OpFlashblockPayload;
        let messages = self.messages.lock().unwrap().clone();
        let payloads: Vec<OpFlashblockPayload> =
            messages.iter().map(|m| serde_json::from_str(m).unwrap_or_else(|e| panic!("{e}: {m}"))).collect();
        let mut blocks = std::collections::BTreeMap::<u64, Vec<&OpFlashblockPayload>>::new();
        for payload in &payloads {
            blocks.entry(payload.metadata.block_number).or_default().push(payload);
        }
        // The first block may have begun before the subscription: every
        // one after it must be streamed, whole.
        let first = *blocks.keys().next().expect("flashblocks were streamed");
        let streamed: Vec<u64> = blocks.keys().copied().filter(|n| *n <= head).collect();
        assert_eq!(streamed, (first..=head).collect::<Vec<_>>(), "every block from the subscription on");
        assert!(head >= first + 5, "blocks {first}..={head}: too few streamed to tell");
        for (&number, flashblocks) in blocks.iter().filter(|(n, _)| **n > first && **n <= head) {
            for (index, payload) in flashblocks.iter().enumerate() {
                assert_eq!(payload.index, index as u64, "block {number}: indices from 0, in order");
                assert_eq!(payload.base.is_some(), index == 0, "block {number}: base on index 0 only");
                assert_eq!(payload.payload_id, flashblocks[0].payload_id);
            }
            let block = l2.rpc("eth_getBlockByNumber", json!([format!("{number:#x}"), false]));
            let streamed: Vec<String> = flashblocks
                .iter()
                .flat_map(|p| &p.diff.transactions)
                .map(|raw| alloy_primitives::keccak256(raw).to_string())
                .collect();
            let hashes: Vec<String> =
                block["transactions"].as_array().unwrap().iter().map(|h| h.as_str().unwrap().to_string()).collect();
            assert_eq!(streamed, hashes, "block {number}: its transactions, each once, in order");
            let closing = flashblocks.last().unwrap();
            assert_eq!(closing.diff.block_hash.to_string(), block["hash"].as_str().unwrap(), "block {number}");
        }
    }
}

/// viem's OP Stack actions against tephra (cli/tests/clients/viem-op.mjs).
fn viem_op_stack(l1: &L1, l2_url: &str, portal: Address) {
    let output = Command::new("node")
        .arg(workspace_root().join("cli/tests/clients/viem-op.mjs"))
        .env("L1_RPC", &l1.0.url)
        .env("L2_RPC", l2_url)
        .env("PORTAL", portal.to_string())
        .env("L1_CHAIN_ID", L1_CHAIN_ID.to_string())
        .env("L2_CHAIN_ID", L2_CHAIN_ID.to_string())
        .current_dir(workspace_root())
        .output()
        .expect("node runs");
    assert!(
        output.status.success(),
        "viem: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// An L1 that stops answering: tephra keeps sequencing on its origin until
/// the sequencer drift (Fjord: 1,800 s) is spent, then holds with the reason
/// on /ready, and resumes by itself when the L1 answers again. The L1's clock
/// starts 1,790 s in the past, so that the drift runs out seconds after the
/// L2 has caught up with the wall clock.
#[test]
fn an_l1_outage_past_the_drift_holds_with_its_reason_and_resumes() {
    if !needs() {
        return;
    }
    let dir = fresh_dir("op-stack-outage");
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let l1 = L1::start(1, &["--timestamp", &(now_s - 1790).to_string()]);
    let (_, config) = setup(&dir, &l1);
    let node = TephraProcess::builder(env!("CARGO_BIN_EXE_tephra"), dir.join("node"))
        .config(&config)
        .log_file("tephra.log")
        .start()
        .expect("tephra starts in OP mode");
    let l2 = RpcClient::new(node.rpc_url());
    // Caught up with the wall clock (the L2 started 1,790 s ago).
    wait_until("the L2 to catch up", Duration::from_secs(120), || {
        let head = l2.rpc("eth_getBlockByNumber", json!(["latest", false]));
        quantity(&head["timestamp"]) + 2 >= now_s
    });
    assert_eq!(ready(&node).0, 200, "ready while the L1 answers");
    l1.0.signal("STOP");
    let mut reason = String::new();
    // The batcher notices first (its L1 does not answer); the blocks stop
    // once the drift is spent.
    wait_until("a hold past the drift", Duration::from_secs(60), || {
        let (status, body) = ready(&node);
        reason = body;
        status != 200 && reason.contains("no L1 origin")
    });
    assert!(reason.contains("no L1 origin"), "/ready: {reason}");
    let held_at = quantity(&l2.rpc("eth_blockNumber", json!([])));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(quantity(&l2.rpc("eth_blockNumber", json!([]))), held_at, "no block past the drift");
    l1.0.signal("CONT");
    wait_until("blocks again", Duration::from_secs(60), || {
        ready(&node).0 == 200 && quantity(&l2.rpc("eth_blockNumber", json!([]))) > held_at + 2
    });
    let head = quantity(&l2.rpc("eth_blockNumber", json!([])));
    kona_verify(&dir, &l1, node.rpc_url(), head);
}

/// Where the reorg test's deposits send ether on L2: the deposit in an L1
/// block the reorg drops, and the one the new L1 chain includes again.
const DROPPED_RECIPIENT: Address = address!("000000000000000000000000000000000000d2d2");
const KEPT_RECIPIENT: Address = address!("000000000000000000000000000000000000d3d3");
/// The L1 dev keys making those deposits: a deposit takes its sender's nonce
/// on L2 too, and the L2 senders (dev keys 0 to 2) must keep theirs.
const DROPPED_DEPOSITOR: usize = 3;
const KEPT_DEPOSITOR: usize = 4;

/// An L1 reorg below the L1 origin of unsafe L2 blocks. anvil replaces its
/// newest blocks from the one holding a deposit on (anvil_reorg); the new
/// chain holds a second deposit again, in another block, and never the
/// first. tephra rewinds to the newest L2 block whose origin is still
/// canonical and rebuilds the rest on the new chain: every user transaction
/// of the abandoned blocks and of the open block again, once, in the order
/// sent; the dropped deposit gone; the other once, under its new hash; the
/// abandoned blocks' logs notified again as removed; kona agreeing on the
/// whole chain, and again after a kill -9.
#[test]
fn an_l1_reorg_below_unsafe_blocks_rebuilds_them_and_kona_agrees() {
    if !needs() {
        return;
    }
    let dir = fresh_dir("op-stack-reorg");
    let l1_block_time_s = 2;
    let l1 = L1::start(l1_block_time_s, &[]);
    let (portal, config) = setup(&dir, &l1);
    let mut node = TephraProcess::builder(env!("CARGO_BIN_EXE_tephra"), dir.join("node"))
        .config(&config)
        // The L1 head is an origin at once: a reorg of anvil's newest blocks
        // reaches the origins of the unsafe blocks. Over anvil's WebSocket,
        // the other L1 transport (the other tests use HTTP).
        .config(&format!("[l1]\nconfirmation_depth = 0\nrpc = {:?}\n", l1.0.url.replacen("http://", "ws://", 1)))
        // Snapshots of blocks the reorg abandons: the restart must not resume from one.
        .config("[block]\nsnapshot_interval_blocks = 4\n")
        .log_file("tephra.log")
        .start()
        .expect("tephra starts in OP mode");
    let mut l2 = L2::new(node.rpc_url());

    // Before the fork: a token, whose mints log a Transfer, and a transfer,
    // in L2 blocks whose origins the new L1 chain keeps.
    let mut token_init = hex::decode(include_str!("../../contracts/Token.bin").trim()).unwrap();
    token_init.extend_from_slice(&U256::from(1_000_000).to_be_bytes::<32>());
    let deployed = l2.send(1, TxKind::Create, 0, token_init);
    assert_eq!(deployed["status"], "0x1", "{deployed}");
    let token: Address = deployed["contractAddress"].as_str().unwrap().parse().unwrap();
    assert_eq!(l2.send(0, TxKind::Call(RECIPIENT), ETHER / 10, Vec::new())["status"], "0x1");
    let logs = LogsFeed::subscribe(node.ws_url(), token);
    // The same logs through a polling filter, as ethers' and web3.py's
    // listeners over HTTP take them.
    let poller = RpcClient::new(node.rpc_url());
    let filter = poller.rpc("eth_newFilter", json!([{"address": token}]));
    let mut polled = Vec::new();
    let poll = |polled: &mut Vec<Value>| {
        let changes = poller.rpc("eth_getFilterChanges", json!([filter]));
        polled.extend(changes.as_array().expect("a list of logs").iter().cloned());
    };

    // L1: the deposit the reorg drops, then the one it moves, whose signed
    // bytes go into the new chain.
    let deposit = |to: Address, value: u128| deposit_transaction_call(to, U256::from(value), 100_000, false, &[]);
    let dropped = l1.send(DROPPED_DEPOSITOR, portal, ETHER, deposit(DROPPED_RECIPIENT, ETHER / 4));
    let kept_raw = l1.signed(KEPT_DEPOSITOR, portal, ETHER, deposit(KEPT_RECIPIENT, ETHER / 5));
    let kept = l1.send_raw(&kept_raw);
    // The first L1 block the reorg replaces.
    let fork = quantity(&dropped["blockNumber"]);
    let head = wait_for_origin(&l1, &l2.client, quantity(&kept["blockNumber"]));
    let chain = full_blocks(&l2.client, head);
    let old_dropped = single(deposits_to(&chain, DROPPED_RECIPIENT), "the dropped deposit before the reorg");
    let old_kept = single(deposits_to(&chain, KEPT_RECIPIENT), "the kept deposit before the reorg");
    assert_eq!(balance(&l2.client, DROPPED_RECIPIENT), U256::from(ETHER / 4));
    assert_eq!(balance(&l2.client, KEPT_RECIPIENT), U256::from(ETHER / 5));

    // L2 blocks on origins the reorg replaces (at or past the deposits'):
    // mints, a log each, and transfers from three senders, in three sealed
    // blocks at least.
    let mut mints = Vec::new();
    let mut mint = |l2: &mut L2, key: usize, amount: u64| {
        let receipt = l2.send(
            key,
            TxKind::Call(token),
            0,
            calldata("mint(address,uint256)", &[word(RECIPIENT), U256::from(amount)]),
        );
        assert_eq!(receipt["status"], "0x1", "{receipt}");
        mints.push(receipt["transactionHash"].as_str().unwrap().to_string());
    };
    for (mint_key, transfer_key) in [(0, 1), (2, 0), (1, 2)] {
        mint(&mut l2, mint_key, 10 + mint_key as u64);
        let transfer = l2.send(transfer_key, TxKind::Call(RECIPIENT), 1, Vec::new());
        assert_eq!(transfer["status"], "0x1", "{transfer}");
        wait_sealed(&l2.client, &transfer);
    }

    // The L1 held still, so that the reorg's depth is the one computed; the
    // L2 blocks as they are before it; one more mint, likely still in the
    // open block when tephra sees the reorg.
    l1.rpc("evm_setIntervalMining", json!([0]));
    let l1_head = quantity(&l1.rpc("eth_blockNumber", json!([])));
    let depth = l1_head - fork + 1;
    let before = block_refs(&l2.client, quantity(&l2.client.rpc("eth_blockNumber", json!([]))));
    mint(&mut l2, 2, 99);
    poll(&mut polled);

    // The reorg: blocks fork..=l1_head replaced by as many new ones, a
    // second apart. The first holds a transfer taking the dropped deposit's
    // nonce, so that it can never be mined again; the last holds the kept
    // deposit again.
    let depositor = DevKey::dev(DROPPED_DEPOSITOR);
    let dropped_tx = l1.rpc("eth_getTransactionByHash", json!([dropped["transactionHash"]]));
    let displacing = sign(
        &depositor,
        L1_CHAIN_ID,
        quantity(&dropped_tx["nonce"]),
        TxKind::Call(depositor.address()),
        0,
        Vec::new(),
        21_000,
    );
    let replaced = l1.block_hash(fork);
    l1.rpc("anvil_setBlockTimestampInterval", json!([1]));
    l1.rpc("anvil_reorg", json!([depth, [[displacing, 0], [kept_raw, depth - 1]]]));
    l1.rpc("anvil_removeBlockTimestampInterval", json!([]));
    assert_eq!(quantity(&l1.rpc("eth_blockNumber", json!([]))), l1_head, "the new L1 chain is as long");
    assert_ne!(l1.block_hash(fork), replaced, "L1 block {fork} replaced");
    let gone = l1.rpc("eth_getTransactionReceipt", json!([dropped["transactionHash"]]));
    assert!(gone.is_null(), "the dropped deposit left the L1: {gone}");
    let kept_again = l1.rpc("eth_getTransactionReceipt", json!([kept["transactionHash"]]));
    assert_eq!((quantity(&kept_again["blockNumber"]), &kept_again["status"]), (l1_head, &json!("0x1")), "{kept_again}");
    l1.rpc("evm_setIntervalMining", json!([l1_block_time_s]));

    // tephra rewinds and rebuilds: the head's origin on the new L1 chain,
    // past the kept deposit's block; every user transaction sealed again.
    let head = wait_rebuilt(&l1, &l2, &node, l1_head, before.len() as u64);

    // The rewind: the blocks whose origins the new L1 chain keeps are as
    // they were, and every one after them was rebuilt.
    let abandoned = rewound(&l1, &l2.client, &before);
    let chain = full_blocks(&l2.client, head);
    check_rebuilt_chain(&l1, &l2, &chain, &abandoned, [&old_dropped, &old_kept]);

    // The logs subscription: each abandoned block's logs again, removed;
    // each mint's log in its block of the new chain.
    wait_for_none("the logs notified", Duration::from_secs(60), || log_problems(&l2.client, &logs.logs(), &mints));
    let removed = logs.logs().iter().filter(|log| log["removed"] == true).count();
    assert!(removed >= 3, "the mints of three abandoned blocks, yet {removed} logs removed");
    wait_for_none("the logs polled", Duration::from_secs(60), || {
        poll(&mut polled);
        log_problems(&l2.client, &polled, &mints)
    });
    let removed = polled.iter().filter(|log| log["removed"] == true).count();
    assert!(removed >= 3, "the filter: the mints of three abandoned blocks, yet {removed} logs removed");

    let (blocks, deposits, users) = kona_counts(&kona_verify(&dir, &l1, node.rpc_url(), head));
    assert_eq!(blocks, head);
    assert_eq!(deposits, head + 1, "an L1-info deposit a block and the kept deposit, once");
    assert_eq!(users, l2.sent.len() as u64, "every user transaction, once");

    // kill -9: the rebuilt chain is what the log holds.
    node.kill9();
    node.start().expect("tephra restarts from its log");
    let head_after = wait_for_origin(&l1, &l2.client, l1_head);
    assert!(head_after >= head, "head {head_after} after the restart, {head} before");
    let chain_after = full_blocks(&l2.client, head_after);
    let hashes = |chain: &[Value]| chain.iter().map(|b| b["hash"].clone()).collect::<Vec<_>>();
    assert_eq!(hashes(&chain_after[..chain.len()]), hashes(&chain), "the rebuilt blocks read back as they were served");
    check_rebuilt_chain(&l1, &l2, &chain_after, &abandoned, [&old_dropped, &old_kept]);
    let (blocks, deposits, users) = kona_counts(&kona_verify(&dir, &l1, node.rpc_url(), head_after));
    assert_eq!((blocks, deposits, users), (head_after, head_after + 1, l2.sent.len() as u64), "after the restart");
    assert_eq!(ready(&node).0, 200, "ready after the restart");

    // A reorg while tephra is down, below its head's origin: the restart
    // finds that origin gone from the L1 and rebuilds the same way.
    let transfer = l2.send(1, TxKind::Call(RECIPIENT), 2, Vec::new());
    wait_sealed(&l2.client, &transfer);
    l1.rpc("evm_setIntervalMining", json!([0]));
    let l1_head = quantity(&l1.rpc("eth_blockNumber", json!([])));
    let before = block_refs(&l2.client, quantity(&l2.client.rpc("eth_blockNumber", json!([]))));
    node.kill9();
    let head_origin = before.last().unwrap()["l1origin"]["number"].as_u64().unwrap();
    l1.rpc("anvil_setBlockTimestampInterval", json!([1]));
    l1.rpc("anvil_reorg", json!([l1_head - head_origin + 1, []]));
    l1.rpc("anvil_removeBlockTimestampInterval", json!([]));
    l1.rpc("evm_setIntervalMining", json!([l1_block_time_s]));
    node.start().expect("tephra restarts after the L1 reorged while it was down");
    let head = wait_rebuilt(&l1, &l2, &node, l1_head, before.len() as u64);
    let abandoned_now = rewound(&l1, &l2.client, &before);
    assert!(abandoned_now.iter().any(|h| **h == before.last().unwrap()["hash"]), "the head was on the dropped origin");
    let chain = full_blocks(&l2.client, head);
    check_rebuilt_chain(&l1, &l2, &chain, &[abandoned, abandoned_now].concat(), [&old_dropped, &old_kept]);
    let (blocks, deposits, users) = kona_counts(&kona_verify(&dir, &l1, node.rpc_url(), head));
    assert_eq!((blocks, deposits, users), (head, head + 1, l2.sent.len() as u64), "after the reorg while down");
}

/// Waits until the L2 is rebuilt on the L1's new chain: its head's origin at
/// or past `l1_head` and canonical, its head at least `head_min`, /ready
/// 200, every user transaction sent in a sealed block; the head then.
fn wait_rebuilt(l1: &L1, l2: &L2, node: &TephraProcess, l1_head: u64, head_min: u64) -> u64 {
    let mut head = 0;
    wait_for_none("the L2 rebuilt on the new L1 chain", Duration::from_secs(120), || {
        let mut problems = Vec::new();
        match origin_reached(l1, &l2.client, l1_head) {
            Some(h) if h >= head_min => head = h,
            Some(h) => problems.push(format!("head {h}, below the {head_min} blocks before the reorg")),
            None => problems.push(format!(
                "the head's origin is not at or past L1 block {l1_head} of the new chain: {}",
                l2.client.rpc("optimism_syncStatus", json!([]))["current_l1"]
            )),
        }
        let (status, body) = ready(node);
        if status != 200 {
            problems.push(format!("/ready {status}: {body}"));
        }
        let unsealed = l2.sent.iter().filter(|(_, hash)| sealed_receipt(&l2.client, hash).is_none());
        problems.extend(unsealed.map(|(_, hash)| format!("{hash} is not in a sealed block")));
        problems
    });
    head
}

/// The blocks of `before` (block references from block 1) that a rewind
/// abandoned: those whose origins left the L1, a suffix; the blocks before
/// them are as they were, every one of them was rebuilt.
fn rewound<'a>(l1: &L1, l2: &RpcClient, before: &'a [Value]) -> Vec<&'a Value> {
    let kept_blocks = before.iter().take_while(|r| l1.is_canonical(&r["l1origin"])).count();
    assert!(before[kept_blocks..].iter().all(|r| !l1.is_canonical(&r["l1origin"])), "origins kept: a prefix");
    assert!((1..before.len()).contains(&kept_blocks), "{kept_blocks} of the {} blocks before kept", before.len());
    for (n, r) in (1..).zip(before) {
        let hash = l2.rpc("eth_getBlockByNumber", json!([format!("{n:#x}"), false]))["hash"].clone();
        if n <= kept_blocks as u64 {
            assert_eq!(hash, r["hash"], "block {n}: its origin {} is still canonical", r["l1origin"]);
        } else {
            assert_ne!(hash, r["hash"], "block {n}: its origin {} left the L1", r["l1origin"]);
        }
    }
    before[kept_blocks..].iter().map(|r| &r["hash"]).collect()
}

/// The chain after the reorg (`chain`, blocks 1 to its head): every block's
/// origin on the L1's canonical chain; the abandoned blocks gone; every user
/// transaction sent in it exactly once, in the order sent, succeeded, each
/// sender's nonces in order; the dropped deposit nowhere, the kept one once
/// under a new hash, and their hashes before the reorg (`old`) unknown.
fn check_rebuilt_chain(l1: &L1, l2: &L2, chain: &[Value], abandoned: &[&Value], old: [&str; 2]) {
    let client = &l2.client;
    for r in block_refs(client, chain.len() as u64) {
        assert!(l1.is_canonical(&r["l1origin"]), "block {}: its origin {} is not the L1's", r["number"], r["l1origin"]);
    }
    for hash in abandoned {
        let block = client.rpc("eth_getBlockByHash", json!([hash, false]));
        assert!(block.is_null(), "abandoned block {hash} still served: {block}");
    }

    let transactions = || chain.iter().flat_map(|b| b["transactions"].as_array().unwrap());
    let mut in_chain: Vec<&str> =
        transactions().filter(|tx| tx["type"] != "0x7e").map(|tx| tx["hash"].as_str().unwrap()).collect();
    let mut sent: Vec<&str> = l2.sent.iter().map(|(_, hash)| hash.as_str()).collect();
    in_chain.sort_unstable();
    sent.sort_unstable();
    assert_eq!(in_chain, sent, "every user transaction sent, each exactly once, and no other");
    let receipts: Vec<Value> = l2
        .sent
        .iter()
        .map(|(_, hash)| sealed_receipt(client, hash).unwrap_or_else(|| panic!("{hash} is not in a sealed block")))
        .collect();
    let positions: Vec<(u64, u64)> =
        receipts.iter().map(|r| (quantity(&r["blockNumber"]), quantity(&r["transactionIndex"]))).collect();
    assert!(positions.windows(2).all(|p| p[0] < p[1]), "(block, index) in the order sent: {positions:?}");
    for receipt in &receipts {
        assert_eq!(receipt["status"], "0x1", "{receipt}");
    }
    for (key, &count) in l2.nonces.iter().enumerate() {
        let from = DevKey::dev(key).address();
        let nonces: Vec<u64> = transactions()
            .filter(|tx| tx["type"] != "0x7e" && address_of(&tx["from"]) == Some(from))
            .map(|tx| quantity(&tx["nonce"]))
            .collect();
        assert_eq!(nonces, (0..count).collect::<Vec<_>>(), "dev key {key}'s nonces in the chain's order");
    }

    assert_eq!(
        deposits_to(chain, DROPPED_RECIPIENT),
        Vec::<String>::new(),
        "the dropped deposit left with its L1 block"
    );
    assert_eq!(balance(client, DROPPED_RECIPIENT), U256::ZERO);
    let kept = single(deposits_to(chain, KEPT_RECIPIENT), "the kept deposit after the reorg");
    assert_ne!(kept, old[1], "another L1 block: another source hash, another deposit hash");
    assert_eq!(client.rpc("eth_getTransactionReceipt", json!([kept]))["status"], "0x1");
    assert_eq!(balance(client, KEPT_RECIPIENT), U256::from(ETHER / 5), "the kept deposit's value, once");
    for hash in old {
        let tx = client.rpc("eth_getTransactionByHash", json!([hash]));
        assert!(tx.is_null(), "{hash}, a deposit of an abandoned block, still served: {tx}");
        let receipt = client.rpc("eth_getTransactionReceipt", json!([hash]));
        assert!(receipt.is_null(), "{hash}, a deposit of an abandoned block, still has a receipt: {receipt}");
    }
}

/// What the logs notified so far (in order) lack: a log of a block no longer
/// the chain's not notified again as removed after it; a removed log not
/// notified before, or of a block still the chain's; a mint (by transaction
/// hash) whose log in its block of the chain was not notified.
fn log_problems(l2: &RpcClient, logs: &[Value], mints: &[String]) -> Vec<String> {
    let in_chain =
        |log: &Value| l2.rpc("eth_getBlockByNumber", json!([log["blockNumber"], false]))["hash"] == log["blockHash"];
    let with_removed = |log: &Value, removed: bool| {
        let mut log = log.clone();
        log["removed"] = json!(removed);
        log
    };
    let mut problems = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        if log["removed"] == true {
            if !logs[..i].contains(&with_removed(log, false)) {
                problems.push(format!("removed, never notified before: {log}"));
            }
            if in_chain(log) {
                problems.push(format!("removed, yet its block is the chain's: {log}"));
            }
        } else if !in_chain(log) && !logs[i + 1..].contains(&with_removed(log, true)) {
            problems.push(format!("its block was abandoned, not notified as removed: {log}"));
        }
    }
    for hash in mints {
        let receipt = l2.rpc("eth_getTransactionReceipt", json!([hash]));
        let notified = logs.iter().any(|log| {
            log["removed"] == false
                && log["transactionHash"] == hash.as_str()
                && log["blockHash"] == receipt["blockHash"]
        });
        if !notified {
            problems.push(format!("mint {hash}: no log notified in its block {}", receipt["blockHash"]));
        }
    }
    problems
}

/// `eth_subscribe` to the logs of `address` over the node's WebSocket
/// (served on the JSON-RPC port).
struct LogsFeed {
    messages: Arc<Mutex<Vec<String>>>,
}

impl LogsFeed {
    /// Subscribes, and waits until the subscription is accepted.
    fn subscribe(ws_url: &str, address: Address) -> Self {
        let request =
            json!({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["logs", {"address": address}]});
        let messages = websocket_messages(ws_url.trim_start_matches("ws://").to_string(), Some(request.to_string()));
        wait_until("the logs subscription", Duration::from_secs(30), || {
            let messages = messages.lock().unwrap();
            let reply = messages.iter().map(|m| serde_json::from_str::<Value>(m).unwrap()).find(|m| m["id"] == 1);
            reply.is_some_and(|reply| {
                assert!(reply["result"].is_string(), "eth_subscribe: {reply}");
                true
            })
        });
        Self { messages }
    }

    /// The logs notified so far, in order.
    fn logs(&self) -> Vec<Value> {
        let messages = self.messages.lock().unwrap();
        let messages = messages.iter().map(|m| serde_json::from_str::<Value>(m).unwrap_or_else(|e| panic!("{e}: {m}")));
        messages.filter(|m| m["method"] == "eth_subscription").map(|m| m["params"]["result"].clone()).collect()
    }
}

/// Waits until the block `receipt`'s transaction was preconfirmed in is sealed.
fn wait_sealed(l2: &RpcClient, receipt: &Value) {
    wait_until("the block to seal", Duration::from_secs(30), || {
        !l2.rpc("eth_getBlockByNumber", json!([receipt["blockNumber"], false])).is_null()
    });
}

/// The receipt of transaction `hash` if the sealed block it names holds it
/// at the index it names; None while it is unknown or only preconfirmed.
fn sealed_receipt(l2: &RpcClient, hash: &str) -> Option<Value> {
    let receipt = l2.rpc("eth_getTransactionReceipt", json!([hash]));
    if receipt.is_null() {
        return None;
    }
    let block = l2.rpc("eth_getBlockByNumber", json!([receipt["blockNumber"], false]));
    let index = usize::try_from(quantity(&receipt["transactionIndex"])).unwrap();
    (!block.is_null() && block["hash"] == receipt["blockHash"] && block["transactions"][index] == hash)
        .then_some(receipt)
}

/// L2 blocks 1 to `head`, with their transactions.
fn full_blocks(l2: &RpcClient, head: u64) -> Vec<Value> {
    let block = |n: u64| l2.rpc("eth_getBlockByNumber", json!([format!("{n:#x}"), true]));
    (1..=head).map(|n| Some(block(n)).filter(|b| !b.is_null()).unwrap_or_else(|| panic!("no block {n}"))).collect()
}

/// op-node's L2 block references of blocks 1 to `head`
/// (optimism_outputAtBlock): each one's hash and L1 origin.
fn block_refs(l2: &RpcClient, head: u64) -> Vec<Value> {
    (1..=head).map(|n| l2.rpc("optimism_outputAtBlock", json!([format!("{n:#x}")]))["blockRef"].clone()).collect()
}

/// The hashes of the deposits in `chain` that send to `to`, in order.
fn deposits_to(chain: &[Value], to: Address) -> Vec<String> {
    let transactions = chain.iter().flat_map(|b| b["transactions"].as_array().unwrap());
    let deposits = transactions.filter(|tx| tx["type"] == "0x7e" && address_of(&tx["to"]) == Some(to));
    deposits.map(|tx| tx["hash"].as_str().unwrap().to_string()).collect()
}

fn address_of(value: &Value) -> Option<Address> {
    value.as_str()?.parse().ok()
}

/// The one hash of `hashes`.
fn single(mut hashes: Vec<String>, what: &str) -> String {
    assert_eq!(hashes.len(), 1, "{what}: {hashes:?}");
    hashes.remove(0)
}
