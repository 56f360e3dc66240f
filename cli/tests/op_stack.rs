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

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use alloy_consensus::{TxEip1559, TypedTransaction};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, Bytes, TxKind, U256, address};
use serde_json::{Value, json};
use tephra_exec::dev::DevKey;
use tephra_testkit::{
    Need,
    abi::{calldata, deposit_transaction_call},
    anvil::Anvil,
    free_port, free_udp_port, fresh_dir, require,
    rpc::{RpcClient, quantity},
    tephra::TephraProcess,
    wait_until, workspace_root,
};

const ETHER: u128 = 1_000_000_000_000_000_000;
const GWEI: u128 = 1_000_000_000;
const L1_CHAIN_ID: u64 = 900;
const L2_CHAIN_ID: u64 = 901;
/// Where the deposits send ether on L2.
const RECIPIENT: Address = address!("000000000000000000000000000000000000d0d0");
const LATE_RECIPIENT: Address = address!("000000000000000000000000000000000000d1d1");
/// REVERT(0, 0): a creation with this init code reverts.
const REVERTING_INIT: [u8; 5] = [0x60, 0x00, 0x60, 0x00, 0xfd];
/// Init code deploying an endless loop (JUMPDEST, PUSH1 0, JUMP): a call to
/// it runs out of gas.
const DEPLOY_SPIN: [u8; 14] = [0x64, 0x5b, 0x60, 0x00, 0x56, 0x00, 0x60, 0x00, 0x52, 0x60, 0x05, 0x60, 0x1b, 0xf3];

fn oracle_binary() -> PathBuf {
    workspace_root().join("oracle/target/release/kona-oracle")
}

fn needs() -> bool {
    let root = workspace_root();
    require(&[
        Need::file(root.join("node_modules/.bin/anvil"), "npm ci at the workspace root (scripts/test.sh does)"),
        Need::file(
            oracle_binary(),
            "cargo build --release --locked --manifest-path oracle/Cargo.toml (scripts/test.sh op)",
        ),
        Need::command("node", "apt install nodejs (scripts/test.sh install)"),
    ])
}

/// anvil as the L1 (chain 900), mining a block every `block_time_s`.
struct L1(Anvil);

impl L1 {
    fn start(block_time_s: u64, extra: &[&str]) -> Self {
        let (chain_id, block_time) = (L1_CHAIN_ID.to_string(), block_time_s.to_string());
        let args: Vec<&str> =
            ["--chain-id", &chain_id, "--block-time", &block_time].into_iter().chain(extra.iter().copied()).collect();
        Self(Anvil::start(&args))
    }

    /// Sends `call` with `value` to `to` from dev key `key`; waits for its
    /// receipt, which must succeed.
    fn send(&self, key: usize, to: Address, value: u128, call: Vec<u8>) -> Value {
        let client = &self.0.client;
        let from = DevKey::dev(key);
        let nonce = quantity(&client.rpc("eth_getTransactionCount", json!([from.address(), "pending"])));
        let raw = sign(&from, L1_CHAIN_ID, nonce, TxKind::Call(to), value, call, 500_000);
        let hash = client.rpc("eth_sendRawTransaction", json!([raw]));
        let mut receipt = Value::Null;
        wait_until("an L1 receipt", Duration::from_secs(30), || {
            receipt = client.rpc("eth_getTransactionReceipt", json!([hash]));
            !receipt.is_null()
        });
        assert_eq!(receipt["status"], "0x1", "{receipt}");
        receipt
    }
}

fn sign(key: &DevKey, chain_id: u64, nonce: u64, to: TxKind, value: u128, input: Vec<u8>, gas_limit: u64) -> String {
    let tx = key.sign(TypedTransaction::Eip1559(TxEip1559 {
        chain_id,
        nonce,
        gas_limit,
        max_fee_per_gas: 50 * GWEI,
        max_priority_fee_per_gas: GWEI,
        to,
        value: U256::from(value),
        access_list: Default::default(),
        input: Bytes::from(input),
    }));
    format!("0x{}", hex::encode(tx.encoded_2718()))
}

/// The devnet's files for an L1 at `l1`: the deposit contract's address and
/// the node config `tephra devnet` wrote.
fn setup(dir: &Path, l1: &L1) -> (Address, String) {
    let ports = dir.join("ports.toml");
    let listen = format!(
        "[rpc]\nlisten = \"127.0.0.1:{}\"\n[udp]\nlisten = \"127.0.0.1:{}\"\n[metrics]\nlisten = \"127.0.0.1:{}\"\n",
        free_port(),
        free_udp_port(),
        free_port()
    );
    std::fs::write(&ports, listen).unwrap();
    let chain = dir.join("chain");
    let output = Command::new(env!("CARGO_BIN_EXE_tephra"))
        .args(["devnet", "--setup-only", "--l1-rpc", &l1.0.url, "--dir"])
        .arg(&chain)
        .arg("--config")
        .arg(&ports)
        .output()
        .expect("tephra devnet runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "devnet: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    let portal = stdout.split("deposit contract ").nth(1).and_then(|rest| rest.split_whitespace().next());
    let portal: Address = portal.expect("the devnet names its deposit contract").parse().unwrap();
    (portal, std::fs::read_to_string(chain.join("tephra.toml")).unwrap())
}

/// An L2 client sending from the dev keys, with their nonces.
struct L2 {
    client: RpcClient,
    nonces: [u64; 3],
}

impl L2 {
    /// Sends and waits for the preconfirmed receipt.
    fn send(&mut self, key: usize, to: TxKind, value: u128, input: Vec<u8>) -> Value {
        let raw = sign(&DevKey::dev(key), L2_CHAIN_ID, self.nonces[key], to, value, input, 1_000_000);
        self.nonces[key] += 1;
        self.client.rpc("eth_sendRawTransactionSync", json!([raw, 10_000]))
    }
}

/// Runs kona over L2 blocks 1..=`to`: every line it printed.
fn kona_verify(dir: &Path, l1: &L1, l2_url: &str, to: u64) -> Vec<Value> {
    let chain = dir.join("chain");
    let output = Command::new(oracle_binary())
        .args(["verify", "--output-roots", "--timeout", "120", "--l1-rpc", &l1.0.url, "--l2-rpc", l2_url])
        .arg("--rollup")
        .arg(chain.join("rollup.json"))
        .arg("--genesis")
        .arg(chain.join("genesis.json"))
        .args(["--to", &to.to_string()])
        .output()
        .expect("kona-oracle runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let tail: String = stdout.lines().rev().take(3).collect::<Vec<_>>().join("\n");
    assert!(output.status.success(), "kona disagrees:\n{tail}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout.lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect()
}

/// Waits until the L2 head's L1 origin is at or past `l1_block`, so that
/// the deposits of that block are in; the head's number then.
fn wait_for_origin(l2: &RpcClient, l1_block: u64) -> u64 {
    let mut head = 0;
    wait_until("the L2 to take the L1 block as origin", Duration::from_secs(60), || {
        let status = l2.rpc("optimism_syncStatus", json!([]));
        head = status["unsafe_l2"]["number"].as_u64().unwrap_or(0);
        status["current_l1"]["number"].as_u64().is_some_and(|n| n >= l1_block)
    });
    head
}

fn balance(l2: &RpcClient, address: Address) -> U256 {
    l2.rpc("eth_getBalance", json!([address, "latest"])).as_str().unwrap().parse().unwrap()
}

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
    let mut l2 = L2 { client: RpcClient::new(node.rpc_url()), nonces: [0; 3] };

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
    let head = wait_for_origin(&l2.client, deposit_block);
    assert_eq!(balance(&l2.client, RECIPIENT), U256::from(ETHER + ETHER / 10), "the deposit's value, once");
    assert!(!mint["logs"].as_array().unwrap().is_empty());

    let lines = kona_verify(&dir, &l1, node.rpc_url(), head);
    let blocks: Vec<&Value> = lines.iter().filter(|line| line.get("block").is_some()).collect();
    assert_eq!(blocks.len() as u64, head);
    let deposits: u64 = blocks.iter().map(|b| b["deposits"].as_u64().unwrap()).sum();
    let users: u64 = blocks.iter().map(|b| b["user_transactions"].as_u64().unwrap()).sum();
    assert_eq!(deposits, head + 3, "an L1-info deposit a block and the three user deposits");
    assert_eq!(users, l2_tx_count);
    flashblocks.check_against(&l2.client, head);

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
    let head = wait_for_origin(&l2.client, quantity(&late["blockNumber"]));
    assert_eq!(balance(&l2.client, LATE_RECIPIENT), U256::from(ETHER / 2), "the late deposit, once");
    assert_eq!(balance(&l2.client, RECIPIENT), U256::from(ETHER + ETHER / 10), "the first, still once");
    let lines = kona_verify(&dir, &l1, node.rpc_url(), head);
    let deposits: u64 = lines.iter().filter_map(|b| b.get("deposits")?.as_u64()).sum();
    assert_eq!(deposits, head + 4, "every user deposit exactly once across the restart");

    viem_op_stack(&l1, node.rpc_url(), portal);
}

/// The Flashblocks stream, read as rollup-boost's consumers read it: each
/// message an op-alloy `OpFlashblockPayload`.
struct FlashblocksFeed {
    messages: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl FlashblocksFeed {
    fn connect(port: u16) -> Self {
        let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = messages.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                use tokio_util::compat::TokioAsyncReadCompatExt;
                let socket = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("the stream listens");
                let mut client = soketto::handshake::Client::new(socket.compat(), "127.0.0.1", "/");
                let accepted = client.handshake().await.expect("a WebSocket handshake");
                assert!(matches!(accepted, soketto::handshake::ServerResponse::Accepted { .. }));
                let (_sender, mut receiver) = client.into_builder().finish();
                let mut data = Vec::new();
                while receiver.receive_data(&mut data).await.is_ok() {
                    sink.lock().unwrap().push(String::from_utf8(std::mem::take(&mut data)).expect("text"));
                }
            });
        });
        Self { messages }
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
    let ready =
        || RpcClient::new(node.metrics_url()).get(&format!("{}/ready", node.metrics_url())).expect("/ready answers");
    // Caught up with the wall clock (the L2 started 1,790 s ago).
    wait_until("the L2 to catch up", Duration::from_secs(120), || {
        let head = l2.rpc("eth_getBlockByNumber", json!(["latest", false]));
        quantity(&head["timestamp"]) + 2 >= now_s
    });
    assert_eq!(ready().0, 200, "ready while the L1 answers");
    l1.0.signal("STOP");
    let mut reason = String::new();
    wait_until("a hold past the drift", Duration::from_secs(60), || {
        let (status, body) = ready();
        reason = body;
        status != 200
    });
    assert!(reason.contains("no L1 origin"), "/ready: {reason}");
    let held_at = quantity(&l2.rpc("eth_blockNumber", json!([])));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(quantity(&l2.rpc("eth_blockNumber", json!([]))), held_at, "no block past the drift");
    l1.0.signal("CONT");
    wait_until("blocks again", Duration::from_secs(60), || {
        ready().0 == 200 && quantity(&l2.rpc("eth_blockNumber", json!([]))) > held_at + 2
    });
    let head = quantity(&l2.rpc("eth_blockNumber", json!([])));
    kona_verify(&dir, &l1, node.rpc_url(), head);
}
