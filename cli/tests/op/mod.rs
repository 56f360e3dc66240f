//! The OP Stack end-to-end tests' kit: anvil as the L1, the devnet's files,
//! an L2 client sending from the dev keys, and kona (oracle/) run over the
//! chain.

#![allow(dead_code, reason = "each test file uses its own part of the kit")]

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use alloy_consensus::{TxEip1559, TypedTransaction};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, Bytes, TxKind, U256, address, keccak256};
use serde_json::{Value, json};
use tephra_exec::dev::DevKey;
use tephra_testkit::{
    Need,
    anvil::Anvil,
    free_port, free_udp_port, require,
    rpc::{RpcClient, quantity},
    tephra::TephraProcess,
    wait_until, workspace_root,
};

pub const ETHER: u128 = 1_000_000_000_000_000_000;
pub const GWEI: u128 = 1_000_000_000;
pub const L1_CHAIN_ID: u64 = 900;
pub const L2_CHAIN_ID: u64 = 901;
/// Where the deposits send ether on L2.
pub const RECIPIENT: Address = address!("000000000000000000000000000000000000d0d0");
pub const LATE_RECIPIENT: Address = address!("000000000000000000000000000000000000d1d1");
/// REVERT(0, 0): a creation with this init code reverts.
pub const REVERTING_INIT: [u8; 5] = [0x60, 0x00, 0x60, 0x00, 0xfd];
/// Init code deploying an endless loop (JUMPDEST, PUSH1 0, JUMP): a call to
/// it runs out of gas.
pub const DEPLOY_SPIN: [u8; 14] = [0x64, 0x5b, 0x60, 0x00, 0x56, 0x00, 0x60, 0x00, 0x52, 0x60, 0x05, 0x60, 0x1b, 0xf3];

pub fn oracle_binary() -> PathBuf {
    workspace_root().join("oracle/target/release/kona-oracle")
}

pub fn needs() -> bool {
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
pub struct L1(pub Anvil);

impl L1 {
    pub fn start(block_time_s: u64, extra: &[&str]) -> Self {
        let (chain_id, block_time) = (L1_CHAIN_ID.to_string(), block_time_s.to_string());
        let args: Vec<&str> =
            ["--chain-id", &chain_id, "--block-time", &block_time].into_iter().chain(extra.iter().copied()).collect();
        Self(Anvil::start(&args))
    }

    pub fn rpc(&self, method: &str, params: Value) -> Value {
        self.0.client.rpc(method, params)
    }

    /// Sends `call` with `value` to `to` from dev key `key`; waits for its
    /// receipt, which must succeed.
    pub fn send(&self, key: usize, to: Address, value: u128, call: Vec<u8>) -> Value {
        self.send_raw(&self.signed(key, to, value, call))
    }

    /// `call` with `value` to `to`, signed by dev key `key` at its next nonce.
    pub fn signed(&self, key: usize, to: Address, value: u128, call: Vec<u8>) -> String {
        let from = DevKey::dev(key);
        let nonce = quantity(&self.rpc("eth_getTransactionCount", json!([from.address(), "pending"])));
        sign(&from, L1_CHAIN_ID, nonce, TxKind::Call(to), value, call, 500_000)
    }

    /// Sends a signed transaction; waits for its receipt, which must succeed.
    pub fn send_raw(&self, raw: &str) -> Value {
        let hash = self.rpc("eth_sendRawTransaction", json!([raw]));
        let mut receipt = Value::Null;
        wait_until("an L1 receipt", Duration::from_secs(30), || {
            receipt = self.rpc("eth_getTransactionReceipt", json!([hash]));
            !receipt.is_null()
        });
        assert_eq!(receipt["status"], "0x1", "{receipt}");
        receipt
    }

    /// The hash of canonical block `number` (null past the head).
    pub fn block_hash(&self, number: u64) -> Value {
        self.rpc("eth_getBlockByNumber", json!([format!("{number:#x}"), false]))["hash"].clone()
    }

    /// Whether `block` (`{"hash", "number"}`, as an L2 block's `l1origin` or
    /// the sync status's `current_l1`) is on the L1's canonical chain.
    pub fn is_canonical(&self, block: &Value) -> bool {
        block["number"].as_u64().is_some_and(|n| !block["hash"].is_null() && self.block_hash(n) == block["hash"])
    }
}

pub fn sign(
    key: &DevKey,
    chain_id: u64,
    nonce: u64,
    to: TxKind,
    value: u128,
    input: Vec<u8>,
    gas_limit: u64,
) -> String {
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
pub fn setup(dir: &Path, l1: &L1) -> (Address, String) {
    setup_with(dir, l1, "", &[])
}

/// `setup`, with `extra` config (a batcher key in an HSM, say) given to
/// `tephra devnet` and the environment `env` (SOFTHSM2_CONF).
pub fn setup_with(dir: &Path, l1: &L1, extra: &str, env: &[(&str, &str)]) -> (Address, String) {
    let ports = dir.join("ports.toml");
    let listen = format!(
        "[rpc]\nlisten = \"127.0.0.1:{}\"\n[udp]\nlisten = \"127.0.0.1:{}\"\n[metrics]\nlisten = \"127.0.0.1:{}\"\n{extra}",
        free_port(),
        free_udp_port(),
        free_port()
    );
    std::fs::write(&ports, listen).unwrap();
    let chain = dir.join("chain");
    let output = Command::new(env!("CARGO_BIN_EXE_tephra"))
        .envs(env.iter().copied())
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

/// An L2 client sending from the dev keys, with their nonces and every
/// transaction it sent.
pub struct L2 {
    pub client: RpcClient,
    pub nonces: [u64; 3],
    /// (dev key, transaction hash), in the order sent.
    pub sent: Vec<(usize, String)>,
}

impl L2 {
    pub fn new(url: &str) -> Self {
        Self { client: RpcClient::new(url), nonces: [0; 3], sent: Vec::new() }
    }

    /// Sends and waits for the preconfirmed receipt.
    pub fn send(&mut self, key: usize, to: TxKind, value: u128, input: Vec<u8>) -> Value {
        let raw = sign(&DevKey::dev(key), L2_CHAIN_ID, self.nonces[key], to, value, input, 1_000_000);
        self.nonces[key] += 1;
        let hash = keccak256(hex::decode(raw.trim_start_matches("0x")).unwrap()).to_string();
        let receipt = self.client.rpc("eth_sendRawTransactionSync", json!([raw, 10_000]));
        assert_eq!(receipt["transactionHash"], hash.as_str(), "{receipt}");
        self.sent.push((key, hash));
        receipt
    }
}

/// Runs kona over L2 blocks 1..=`to`: every line it printed.
pub fn kona_verify(dir: &Path, l1: &L1, l2_url: &str, to: u64) -> Vec<Value> {
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

/// kona's lines summed over the blocks it verified: (blocks, deposits, user
/// transactions).
pub fn kona_counts(lines: &[Value]) -> (u64, u64, u64) {
    let blocks: Vec<&Value> = lines.iter().filter(|line| line.get("block").is_some()).collect();
    let sum = |field: &str| blocks.iter().map(|b| b[field].as_u64().unwrap_or_else(|| panic!("{field}: {b}"))).sum();
    (blocks.len() as u64, sum("deposits"), sum("user_transactions"))
}

/// Waits until the L2 head's L1 origin is at or past `l1_block` and on the
/// L1's canonical chain, so that the deposits of that block are in; the
/// head's number then.
pub fn wait_for_origin(l1: &L1, l2: &RpcClient, l1_block: u64) -> u64 {
    let mut head = 0;
    wait_until("the L2 to take the L1 block as origin", Duration::from_secs(60), || {
        origin_reached(l1, l2, l1_block).inspect(|h| head = *h).is_some()
    });
    head
}

/// The L2 head's number if its L1 origin is at or past `l1_block` and
/// canonical on the L1 (an origin a reorg replaced is not).
pub fn origin_reached(l1: &L1, l2: &RpcClient, l1_block: u64) -> Option<u64> {
    let status = l2.rpc("optimism_syncStatus", json!([]));
    let origin = &status["current_l1"];
    let reached = origin["number"].as_u64().is_some_and(|n| n >= l1_block) && l1.is_canonical(origin);
    reached.then(|| status["unsafe_l2"]["number"].as_u64().expect("the head's number"))
}

/// Polls `problems` every 100 ms until it finds none, for at most `limit`;
/// fails naming `what` and listing the last problems found.
pub fn wait_for_none(what: &str, limit: Duration, mut problems: impl FnMut() -> Vec<String>) {
    let deadline = Instant::now() + limit;
    loop {
        let found = problems();
        if found.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}:\n{}", found.join("\n"));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// GET /ready on the node's metrics listener: its status and body.
pub fn ready(node: &TephraProcess) -> (u16, String) {
    RpcClient::new(node.metrics_url()).get(&format!("{}/ready", node.metrics_url())).expect("/ready answers")
}

pub fn balance(l2: &RpcClient, address: Address) -> U256 {
    l2.rpc("eth_getBalance", json!([address, "latest"])).as_str().unwrap().parse().unwrap()
}
