//! `tephra devnet`: the OP Stack mode on one machine, a complete rollup. A
//! local L1 (anvil from the project's pinned npm packages, or any anvil at
//! `--l1-rpc`), a deposit contract emitting OptimismPortal's exact
//! `TransactionDeposited` event (contracts/DepositPortal.sol), a batcher key
//! funded on the L1, an op-geth genesis and an op-node rollup.json written
//! for them, and tephra sequencing the chain and posting its batches.
//!
//! ```text
//!  anvil (L1, chain 900) ──> DepositPortal deployed; batcher key (DIR/data/batcher.key) funded
//!        │                     └─> the last of these L1 blocks is the rollup's L1 genesis
//!        │            genesis.json: the Isthmus predeploys (testdata/op) + the dev accounts
//!        │            rollup.json:  its hash, the portal, the batcher address, block time, chain ids
//!        v                                                   v
//!  tephra run (OP mode, [l1] rpc = anvil, [batcher] on) <── DIR/tephra.toml, DIR/data
//!        └─> span batches to the batch inbox on anvil; safe and finalized heads read back
//! ```

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use alloy_primitives::{Address, B256, U256};
use serde_json::{Value, json};
use tephra_node::config::Config;

use crate::verify::rpc;

/// The L1's chain id, as op-stack devnets number theirs.
pub const DEVNET_L1_CHAIN_ID: u64 = 900;
/// The L2's chain id.
pub const DEVNET_L2_CHAIN_ID: u64 = 901;
/// `--interop`: the second L2's chain id, and where its files go in the devnet's directory.
pub const DEVNET_SECOND_L2_CHAIN_ID: u64 = 902;
const SECOND_CHAIN_DIR: &str = "second";
/// The L1's block time: anvil mines every 2 s.
const DEVNET_L1_BLOCK_TIME_S: u64 = 2;
/// The L2's block time.
const DEVNET_L2_BLOCK_TIME_S: u64 = 1;
/// Each standard dev account's L2 balance at genesis: 10,000 ETH.
const DEV_BALANCE_WEI: u128 = 10_000 * 1_000_000_000_000_000_000;
/// How long anvil and each L1 step may take.
const L1_STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// What the batcher key gets on the L1 to pay for its transactions: 100 ETH.
const BATCHER_FUNDING_WEI: u128 = 100 * 1_000_000_000_000_000_000;

const GENESIS_L2_GZ: &[u8] = include_bytes!("../../testdata/op/420110017-genesis-l2.json.gz");
const ROLLUP_TEMPLATE: &str = include_str!("../../testdata/op/420110017-rollup.json");
const DEPOSIT_PORTAL_BIN: &str = include_str!("../../contracts/DepositPortal.bin");

/// What `tephra devnet` is told.
#[derive(Debug)]
pub struct DevnetArgs {
    /// Where the genesis, rollup config, node config and data dir go (must not hold a data dir yet).
    pub dir: PathBuf,
    /// An anvil already running; none: start one from node_modules.
    pub l1_rpc: Option<String>,
    pub l1_port: u16,
    /// Only write the files and deploy; do not run the node.
    pub setup_only: bool,
    /// A second L2 on the same L1, Hyperlane's contracts on both, each
    /// node a validator of its chain, a relayer between them, and a message
    /// from the first to the second.
    pub interop: bool,
}

/// An anvil this command started: stopped with it. npm's `anvil` is a
/// wrapper that starts the real binary, so it runs in its own process group
/// and the whole group is stopped.
struct Anvil(Child);

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", "--", &format!("-{}", self.0.id())]).status();
        let _ = self.0.wait();
    }
}

#[allow(clippy::print_stdout, reason = "the CLI reports its results on stdout")]
pub fn devnet(config: Config, args: DevnetArgs) -> Result<(), String> {
    if args.dir.join("data").exists() {
        return Err(format!("{} already holds a devnet: remove it or name another --dir", args.dir.display()));
    }
    std::fs::create_dir_all(&args.dir).map_err(|e| format!("{}: {e}", args.dir.display()))?;
    let (_anvil, l1_rpc) = match &args.l1_rpc {
        Some(url) => (None, url.clone()),
        None => {
            let (anvil, url) = start_anvil(args.l1_port)?;
            (Some(anvil), url)
        }
    };
    let agent = ureq::Agent::new_with_defaults();
    wait_answering(&agent, &l1_rpc)?;
    let config_path = setup_chain(&agent, &config, &args.dir, &l1_rpc, DEVNET_L2_CHAIN_ID)?;
    if args.interop {
        let second_dir = args.dir.join(SECOND_CHAIN_DIR);
        let second_config = crate::devnet_interop::second_chain_config(&config);
        std::fs::create_dir_all(&second_dir).map_err(|e| format!("{}: {e}", second_dir.display()))?;
        let second_path = setup_chain(&agent, &second_config, &second_dir, &l1_rpc, DEVNET_SECOND_L2_CHAIN_ID)?;
        return crate::devnet_interop::run(
            &args.dir,
            [(config_path, DEVNET_L2_CHAIN_ID), (second_path, DEVNET_SECOND_L2_CHAIN_ID)],
        );
    }
    if args.setup_only {
        // The anvil this command started stops with it: only an --l1-rpc one outlives the setup.
        return Ok(());
    }
    let config = Config::load(Some(&config_path)).map_err(|e| e.to_string())?;
    crate::run::run(config)
}

/// anvil from the project's npm packages (`npm ci` installs it), looked
/// for from the current directory up.
fn start_anvil(port: u16) -> Result<(Anvil, String), String> {
    let anvil = find_anvil()?;
    let child = Command::new(&anvil)
        .args(["--port", &port.to_string(), "--chain-id", &DEVNET_L1_CHAIN_ID.to_string()])
        .args(["--block-time", &DEVNET_L1_BLOCK_TIME_S.to_string(), "--silent"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("{}: {e}", anvil.display()))?;
    Ok((Anvil(child), format!("http://127.0.0.1:{port}")))
}

fn find_anvil() -> Result<PathBuf, String> {
    let start = std::env::current_dir().map_err(|e| e.to_string())?;
    start.ancestors().map(|dir| dir.join("node_modules/.bin/anvil")).find(|path| path.exists()).ok_or_else(|| {
        "no anvil: run `npm ci` in the repository (its pinned @foundry-rs/anvil), or pass --l1-rpc".into()
    })
}

fn wait_answering(agent: &ureq::Agent, url: &str) -> Result<(), String> {
    let started = Instant::now();
    loop {
        match rpc(agent, url, "eth_chainId", json!([])) {
            Ok(_) => return Ok(()),
            Err(error) if started.elapsed() > L1_STEP_TIMEOUT => {
                return Err(format!("the L1 does not answer: {error}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Deploys the deposit contract from anvil's first (unlocked) account and
/// waits for its receipt.
fn deploy_portal(agent: &ureq::Agent, url: &str) -> Result<Address, String> {
    let accounts = rpc(agent, url, "eth_accounts", json!([]))?;
    let from = accounts.get(0).cloned().ok_or("the L1 has no unlocked account to deploy from")?;
    let data = format!("0x{}", DEPOSIT_PORTAL_BIN.trim());
    let hash = rpc(agent, url, "eth_sendTransaction", json!([{ "from": from, "data": data, "gas": "0x2dc6c0" }]))?;
    let receipt = mined(agent, url, &hash, "the deposit contract's deployment")?;
    let address = receipt.get("contractAddress").and_then(Value::as_str).ok_or("no contractAddress")?;
    address.parse().map_err(|e| format!("contractAddress {address}: {e}"))
}

/// The batcher key `[batcher.key]` names (a dev file key in `data_dir`,
/// created here; an HSM's key, generated with `tephra hsm keygen --key
/// batcher`), funded from anvil's first account: the batcher pays for its
/// L1 transactions.
fn fund_batcher(agent: &ureq::Agent, url: &str, config: &Config, data_dir: &Path) -> Result<Address, String> {
    std::fs::create_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let data = tephra_node::node::DataDir(data_dir.to_path_buf());
    let key = tephra_node::node::open_key(&config.batcher.key, &data, "batcher").map_err(|e| e.to_string())?;
    let batcher = key.address();
    let accounts = rpc(agent, url, "eth_accounts", json!([]))?;
    let from = accounts.get(0).cloned().ok_or("the L1 has no unlocked account to fund the batcher from")?;
    let value = format!("{:#x}", U256::from(BATCHER_FUNDING_WEI));
    let hash = rpc(agent, url, "eth_sendTransaction", json!([{ "from": from, "to": batcher, "value": value }]))?;
    mined(agent, url, &hash, "the batcher's funding")?;
    Ok(batcher)
}

/// The receipt of `hash` once mined and successful.
fn mined(agent: &ureq::Agent, url: &str, hash: &Value, what: &str) -> Result<Value, String> {
    let started = Instant::now();
    loop {
        let receipt = rpc(agent, url, "eth_getTransactionReceipt", json!([hash]))?;
        if !receipt.is_null() {
            if receipt["status"] != "0x1" {
                return Err(format!("{what} failed: {receipt}"));
            }
            return Ok(receipt);
        }
        if started.elapsed() > L1_STEP_TIMEOUT {
            return Err(format!("{what} was not mined"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An L2 chain `chain_id` on the L1 in `dir`: its deposit contract, its
/// batcher key funded, its files; the node config's path.
#[allow(clippy::print_stdout, reason = "the CLI reports its results on stdout")]
fn setup_chain(
    agent: &ureq::Agent,
    config: &Config,
    dir: &Path,
    l1_rpc: &str,
    chain_id: u64,
) -> Result<PathBuf, String> {
    let portal = deploy_portal(agent, l1_rpc)?;
    let batcher = fund_batcher(agent, l1_rpc, config, &dir.join("data"))?;
    let l1_genesis = rpc(agent, l1_rpc, "eth_getBlockByNumber", json!(["latest", false]))?;
    let config_path = write_chain(config, dir, l1_rpc, (portal, batcher), &l1_genesis, chain_id)?;
    println!(
        "devnet: L1 {l1_rpc} (chain {DEVNET_L1_CHAIN_ID}), deposit contract {portal}\ndevnet: batcher {batcher}, funded on the L1\n\
         devnet: L2 chain {chain_id}, files in {dir}; run it again with `tephra run --config {config}`",
        dir = dir.display(),
        config = config_path.display()
    );
    Ok(config_path)
}

/// Writes genesis.json, rollup.json and tephra.toml into `dir`; the config's path.
fn write_chain(
    config: &Config,
    dir: &Path,
    l1_rpc: &str,
    (portal, batcher): (Address, Address),
    l1: &Value,
    chain_id: u64,
) -> Result<PathBuf, String> {
    let number = quantity(&l1["number"])?;
    let timestamp = quantity(&l1["timestamp"])?;
    let hash: B256 = serde_json::from_value(l1["hash"].clone()).map_err(|e| format!("L1 block hash: {e}"))?;
    let genesis = l2_genesis(timestamp, chain_id)?;
    let chain = tephra_exec::ChainSpec::from_genesis_json(&genesis.to_string()).map_err(|e| e.to_string())?;
    let mut rollup: Value = serde_json::from_str(ROLLUP_TEMPLATE).map_err(|e| e.to_string())?;
    rollup["genesis"]["l1"] = json!({ "hash": hash, "number": number });
    rollup["genesis"]["l2"] = json!({ "hash": chain.genesis_hash(), "number": 0 });
    rollup["genesis"]["l2_time"] = json!(timestamp);
    rollup["block_time"] = json!(DEVNET_L2_BLOCK_TIME_S);
    rollup["l1_chain_id"] = json!(DEVNET_L1_CHAIN_ID);
    rollup["l2_chain_id"] = json!(chain_id);
    rollup["deposit_contract_address"] = json!(portal);
    rollup["genesis"]["system_config"]["batcherAddr"] = json!(batcher);
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display())).map(|()| path)
    };
    let genesis_path = write("genesis.json", genesis.to_string())?;
    let rollup_path = write("rollup.json", serde_json::to_string_pretty(&rollup).map_err(|e| e.to_string())?)?;
    let toml = format!(
        "[node]\ndata_dir = {data:?}\ngenesis = {genesis:?}\nrollup_config = {rollup:?}\n\n\
         [rpc]\nlisten = \"{rpc_listen}\"\n\n[udp]\nlisten = \"{udp_listen}\"\n\n[metrics]\nlisten = \"{metrics_listen}\"\n\n\
         [l1]\nrpc = {l1_rpc:?}\nconfirmation_depth = 1\npoll_interval_ms = 500\n\n\
         [batcher]\nenabled = true\nsafe_depth_l1_blocks = 2\nchannel_duration_max_l1_blocks = 1\n",
        data = dir.join("data").display().to_string(),
        genesis = genesis_path.display().to_string(),
        rollup = rollup_path.display().to_string(),
        rpc_listen = config.rpc.listen,
        udp_listen = config.udp.listen,
        metrics_listen = config.metrics.listen,
    );
    write("tephra.toml", toml)
}

/// The Isthmus devnet's genesis (every predeploy, testdata/op) at
/// `timestamp`, as chain 901, with the ten standard dev accounts funded.
fn l2_genesis(timestamp: u64, chain_id: u64) -> Result<Value, String> {
    let mut json = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(GENESIS_L2_GZ), &mut json)
        .map_err(|e| format!("the embedded genesis: {e}"))?;
    let mut genesis: Value = serde_json::from_str(&json).map_err(|e| e.to_string())?;
    genesis["timestamp"] = json!(format!("{timestamp:#x}"));
    genesis["config"]["chainId"] = json!(chain_id);
    let alloc = genesis["alloc"].as_object_mut().ok_or("the embedded genesis has no alloc")?;
    for key in tephra_exec::dev::DEV_PRIVATE_KEYS.iter() {
        let address = tephra_exec::dev::DevKey::from_bytes(key).ok_or("a dev key")?.address();
        let hex = format!("{:x}", address);
        alloc.insert(
            hex.trim_start_matches("0x").to_string(),
            json!({ "balance": format!("{:#x}", U256::from(DEV_BALANCE_WEI)) }),
        );
    }
    Ok(genesis)
}

fn quantity(value: &Value) -> Result<u64, String> {
    let text = value.as_str().ok_or_else(|| format!("{value} is not a quantity"))?;
    u64::from_str_radix(text.trim_start_matches("0x"), 16).map_err(|e| format!("{text}: {e}"))
}
