//! The reliability benchmark's node: a generated genesis, a `tephra` process
//! on free loopback ports, a JSON-RPC call and percentiles. (Throughput and
//! latency against anvil live in the bench harness, bench/.)

#![allow(dead_code, reason = "each benchmark uses its own part of the support")]

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::{Value, json};
use tephra_exec::dev::DevKey;
use tephra_testkit::{
    rpc::RpcClient,
    tephra::{Readiness, TephraProcess},
};

#[allow(unused_imports, reason = "the ha benchmark picks ports of its own; the others do not")]
pub use tephra_testkit::free_port;

/// A genesis funding `accounts` generated accounts (`DevKey::from_seed(0..)`),
/// every fork through Osaka.
pub fn genesis(dir: &Path, accounts: usize) -> PathBuf {
    let mut genesis: Value = serde_json::from_str(tephra_exec::chainspec::DEV_GENESIS_JSON).unwrap();
    let alloc = genesis["alloc"].as_object_mut().unwrap();
    for i in 0..accounts as u64 {
        alloc.insert(DevKey::from_seed(i).address().to_string(), json!({"balance": "0x3635c9adc5dea00000"}));
    }
    let path = dir.join("genesis.json");
    std::fs::write(&path, serde_json::to_string(&genesis).unwrap()).unwrap();
    path
}

/// A node under test, in its own process group: the whole group is killed
/// on drop.
pub struct Peer {
    process: TephraProcess,
    pub url: String,
    /// tephra's UDP address.
    pub udp_address: String,
}

impl Peer {
    /// Resident memory of the process, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        self.process.rss_bytes().unwrap_or(0)
    }
}

/// One JSON-RPC call over `agent`: the result, or why not.
pub fn rpc(agent: &ureq::Agent, url: &str, method: &str, params: Value) -> Result<Value, String> {
    RpcClient::with_agent(url, agent.clone()).try_call(method, params)
}

/// The release `tephra` on `genesis`, `extra` TOML merged into its config
/// (a listen address `extra` names is kept), its output discarded, up once
/// it answers JSON-RPC. The process starts in the calling thread's network
/// namespace.
pub fn start_tephra(dir: &Path, genesis: &Path, extra: &str) -> Peer {
    let defaults =
        format!("[node]\ngenesis = {}\nlog_level = \"warn\"\n", toml::Value::from(genesis.display().to_string()));
    let process = TephraProcess::builder(env!("CARGO_BIN_EXE_tephra"), dir)
        .config(&defaults)
        .config(extra)
        .discard_output()
        .own_process_group()
        .ready_when(Readiness::Answering)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    Peer { url: process.rpc_url().to_string(), udp_address: process.udp_address().to_string(), process }
}

/// The value at `per_mille` of sorted samples, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], per_mille: usize) -> f64 {
    let index = (sorted.len() - 1) * per_mille / 1000;
    sorted[index].as_secs_f64() * 1e3
}
