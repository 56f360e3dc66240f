//! The reliability benchmark's node: a generated genesis, a `tephra` process
//! on free loopback ports, a JSON-RPC call and percentiles. (Throughput and
//! latency against anvil live in the bench harness, bench/.)

#![allow(dead_code, reason = "each benchmark uses its own part of the support")]

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tephra_exec::dev::DevKey;

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
    pub child: Child,
    pub url: String,
    /// tephra's UDP address.
    pub udp_address: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.wait();
    }
}

impl Peer {
    /// Resident memory of the process, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    }
}

pub fn rpc(agent: &ureq::Agent, url: &str, method: &str, params: Value) -> Result<Value, String> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let mut response = agent.post(url).send_json(&body).map_err(|e| e.to_string())?;
    let reply: Value = response.body_mut().read_json().map_err(|e| e.to_string())?;
    match reply.get("error") {
        Some(error) => Err(error.to_string()),
        None => Ok(reply["result"].clone()),
    }
}

pub fn wait_ready(url: &str) {
    let agent = ureq::Agent::new_with_defaults();
    let deadline = Instant::now() + Duration::from_secs(60);
    while rpc(&agent, url, "eth_chainId", json!([])).is_err() {
        assert!(Instant::now() < deadline, "{url} not up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The release `tephra` on `genesis`, `extra` TOML merged into its config
/// (a listen address `extra` names is kept). The process starts in the
/// calling thread's network namespace.
pub fn start_tephra(dir: &Path, genesis: &Path, extra: &str) -> Peer {
    let (port, metrics, udp) = (free_port(), free_port(), free_port());
    std::fs::create_dir_all(dir).unwrap();
    let mut table: toml::Table = extra.parse().expect("extra config is TOML");
    let mut set = |section: &str, key: &str, value: String| {
        let entry = table.entry(section).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        entry.as_table_mut().expect("a table").entry(key).or_insert(toml::Value::String(value));
    };
    set("node", "data_dir", dir.join("data").display().to_string());
    set("node", "genesis", genesis.display().to_string());
    set("node", "log_level", "warn".into());
    set("rpc", "listen", format!("127.0.0.1:{port}"));
    set("metrics", "listen", format!("127.0.0.1:{metrics}"));
    set("udp", "listen", format!("127.0.0.1:{udp}"));
    let udp_address = table["udp"]["listen"].as_str().unwrap().to_string();
    let config = dir.join("tephra.toml");
    std::fs::write(&config, toml::to_string(&table).unwrap()).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_tephra"))
        .args(["run", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&url);
    Peer { child, url, udp_address }
}

/// The value at `per_mille` of sorted samples, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], per_mille: usize) -> f64 {
    let index = (sorted.len() - 1) * per_mille / 1000;
    sorted[index].as_secs_f64() * 1e3
}
