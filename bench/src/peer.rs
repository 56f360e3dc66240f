//! The nodes under load: tephra (the release binary, its own process) and
//! anvil (npm @foundry-rs/anvil), each started fresh on the workload's
//! genesis for every phase, so that phases do not inherit each other's state.

use std::{
    fs,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tephra_testkit::{
    free_port,
    rpc::RpcClient,
    tephra::{self, TephraProcess},
};

/// How long a node may take to come up: anvil to answer eth_chainId,
/// tephra to say /ready.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// tephra's settings for a benchmark, merged under the caller's extra TOML:
/// the harness is one source address, so the per-source limits (which exist
/// to stop floods) are raised (UDP) or turned off (JSON-RPC's calls per
/// client) out of the way of the pipeline being measured.
const TEPHRA_BENCH_CONFIG: &str = "\
[udp]
source_txs_per_s = 100000000
source_burst_txs = 10000000
[net]
source_datagrams_per_s = 100000000
source_burst_datagrams = 10000000
[rpc]
client_requests_per_s = 0
";

/// A node under test, in its own process group (npm's `anvil` is a wrapper
/// that starts the real binary): the whole group is killed on drop.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    process: Process,
    pub rpc_url: String,
    /// tephra's UDP address and metrics; `None` for anvil.
    pub udp_address: Option<String>,
    pub metrics_url: Option<String>,
    /// tephra signs its blocks; anvil does not.
    pub signs_blocks: bool,
}

#[derive(Debug)]
enum Process {
    Tephra(TephraProcess),
    Anvil(Group),
}

/// A child leading its own process group, killed with it on drop.
#[derive(Debug)]
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.0.id())]).status();
        let _ = self.0.wait();
    }
}

impl Node {
    /// CPU seconds each of tephra's threads has used, summed by thread name
    /// (from /proc, whose times are in USER_HZ ticks: 100 a second on every
    /// Linux tephra runs on, x86-64 and arm64 alike); empty for anvil.
    pub fn thread_cpu_s(&self) -> std::collections::BTreeMap<String, f64> {
        let mut threads = std::collections::BTreeMap::new();
        let Process::Tephra(process) = &self.process else { return threads };
        let Some(pid) = process.pid() else { return threads };
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return threads };
        for task in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
            // "tid (comm) state ...": the name may hold spaces; fields after it.
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
            let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
            // utime and stime: the 14th and 15th fields, 12th and 13th after the name.
            *threads.entry(stat[open + 1..close].to_string()).or_insert(0.0) += (ticks(11) + ticks(12)) / 100.0;
        }
        threads
    }

    /// Resident memory of the node's process, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        match &self.process {
            Process::Tephra(process) => process.rss_bytes(),
            Process::Anvil(Group(child)) => tephra::rss_bytes(child.id()),
        }
        .unwrap_or(0)
    }
}

/// Where the peers' programs are.
#[derive(Clone, Debug)]
pub struct Programs {
    pub tephra: PathBuf,
    pub anvil: PathBuf,
    /// TOML merged into every tephra's config (after the bench settings).
    pub tephra_extra: String,
}

/// One JSON-RPC call over `agent`: the result, or why not (naming the method).
pub fn rpc(agent: &ureq::Agent, url: &str, method: &str, params: Value) -> Result<Value, String> {
    RpcClient::with_agent(url, agent.clone()).try_call(method, params).map_err(|e| e.to_string())
}

/// Starts `command` in its own process group, its output to `log`.
fn spawn_logged(command: &mut Command, log: &Path, hint: &str) -> Result<Child, String> {
    let file = fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    command
        .stdout(file.try_clone().map_err(|e| e.to_string())?)
        .stderr(file)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("{}: {e} ({hint})", command.get_program().to_string_lossy()))
}

/// Polls `answers` until it holds, the process exits or `START_TIMEOUT` passes.
fn wait_until(
    child: &mut Child,
    name: &str,
    log: &Path,
    what: &str,
    mut answers: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    while !answers() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{name} exited ({status}) before {what}: see {}", log.display()));
        }
        if Instant::now() > deadline {
            return Err(format!("{name}: not {what} within {START_TIMEOUT:?}: see {}", log.display()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Waits until `url` answers eth_chainId.
fn wait_answering(url: &str, child: &mut Child, name: &str, log: &Path) -> Result<(), String> {
    let client = RpcClient::new(url);
    wait_until(child, name, log, "it answered", || client.try_call("eth_chainId", json!([])).is_ok())
}

/// A fresh tephra in `dir` (emptied) on `genesis`, on free loopback ports,
/// up once /ready says so.
pub fn start_tephra(programs: &Programs, dir: &Path, genesis: &Path) -> Result<Node, String> {
    let _ = fs::remove_dir_all(dir);
    // The previous phase's log, written and now deleted, reaches the disk
    // now rather than during this phase's group commits.
    let _ = std::process::Command::new("sync").status();
    programs.tephra_extra.parse::<toml::Table>().map_err(|e| format!("--tephra-config: {e}"))?;
    let defaults =
        format!("[node]\nlog_level = \"warn\"\ngenesis = {}\n", toml::Value::from(genesis.display().to_string()));
    let mut process = TephraProcess::builder(&programs.tephra, dir)
        .config(&defaults)
        .config(TEPHRA_BENCH_CONFIG)
        .config(&programs.tephra_extra)
        .own_process_group()
        .ready_within(START_TIMEOUT)
        .configure()
        .map_err(|e| e.to_string())?;
    process.spawn().map_err(|e| format!("{e} (build it: cargo build --release -p tephra-cli)"))?;
    process.wait_ready().map_err(|e| e.to_string())?;
    Ok(Node {
        name: "tephra".into(),
        rpc_url: process.rpc_url().to_string(),
        udp_address: Some(process.udp_address().to_string()),
        metrics_url: Some(process.metrics_url().to_string()),
        signs_blocks: true,
        process: Process::Tephra(process),
    })
}

/// A fresh anvil on `genesis`: automine (a block per transaction) when
/// `block_time_s` is `None`, else interval mining.
pub fn start_anvil(programs: &Programs, dir: &Path, genesis: &Path, block_time_s: Option<u64>) -> Result<Node, String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let port = free_port();
    let mining: Vec<String> = block_time_s.map(|s| vec!["--block-time".into(), s.to_string()]).unwrap_or_default();
    let mut command = Command::new(&programs.anvil);
    command
        .arg("--init")
        .arg(genesis)
        .args(["--hardfork", "osaka", "--port", &port.to_string(), "--gas-limit", "1000000000", "--silent"])
        .args(&mining);
    let log_path = dir.join("anvil.log");
    let mut group = Group(spawn_logged(&mut command, &log_path, "install it: npm ci")?);
    let rpc_url = format!("http://127.0.0.1:{port}");
    wait_answering(&rpc_url, &mut group.0, "anvil", &log_path)?;
    let name = match block_time_s {
        Some(s) => format!("anvil (interval mining, {s} s)"),
        None => "anvil (automine)".into(),
    };
    Ok(Node {
        name,
        process: Process::Anvil(group),
        rpc_url,
        udp_address: None,
        metrics_url: None,
        signs_blocks: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_config_merges_table_by_table() {
        let mut base: toml::Table = TEPHRA_BENCH_CONFIG.parse().unwrap();
        tephra::merge(&mut base, "[udp]\nsource_txs_per_s = 5\n[exec]\nshards = 2\n".parse().unwrap());
        assert_eq!(base["udp"]["source_txs_per_s"].as_integer(), Some(5));
        assert_eq!(base["udp"]["source_burst_txs"].as_integer(), Some(10_000_000));
        assert_eq!(base["exec"]["shards"].as_integer(), Some(2));
    }
}
