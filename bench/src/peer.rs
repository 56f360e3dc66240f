//! The nodes under load: tephra (the release binary, its own process) and
//! anvil (npm @foundry-rs/anvil), each started fresh on the workload's
//! genesis for every phase, so that phases do not inherit each other's state.

use std::{
    fs,
    net::TcpListener,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

/// How long a node may take to answer its first eth_chainId.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// tephra's settings for a benchmark, merged under the caller's extra TOML:
/// the harness is one source address, so the per-source limits (which exist
/// to stop floods) are raised out of the way of the pipeline being measured.
const TEPHRA_BENCH_CONFIG: &str = "\
[udp]
source_txs_per_s = 100000000
source_burst_txs = 10000000
[net]
source_datagrams_per_s = 100000000
source_burst_datagrams = 10000000
";

/// A node under test, in its own process group (npm's `anvil` is a wrapper
/// that starts the real binary): the whole group is killed on drop.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    child: Child,
    pub rpc_url: String,
    /// tephra's UDP address and metrics; `None` for anvil.
    pub udp_address: Option<String>,
    pub metrics_url: Option<String>,
    /// tephra signs its blocks; anvil does not.
    pub signs_blocks: bool,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.wait();
    }
}

impl Node {
    /// Resident memory of the node's process, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
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

pub fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

pub fn rpc(agent: &ureq::Agent, url: &str, method: &str, params: Value) -> Result<Value, String> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let mut response = agent.post(url).send_json(&body).map_err(|e| format!("{method}: {e}"))?;
    let reply: Value = response.body_mut().read_json().map_err(|e| format!("{method}: {e}"))?;
    match reply.get("error") {
        Some(error) => Err(format!("{method}: {error}")),
        None => Ok(reply["result"].clone()),
    }
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
    let agent = ureq::Agent::new_with_defaults();
    wait_until(child, name, log, "it answered", || rpc(&agent, url, "eth_chainId", json!([])).is_ok())
}

/// Merges `overlay` into `base`, table by table (the overlay wins).
fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base)), toml::Value::Table(overlay)) => merge(base, overlay),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// A fresh tephra in `dir` (emptied) on `genesis`, on free loopback ports.
pub fn start_tephra(programs: &Programs, dir: &Path, genesis: &Path) -> Result<Node, String> {
    let _ = fs::remove_dir_all(dir);
    // The previous phase's log, written and now deleted, reaches the disk
    // now rather than during this phase's group commits.
    let _ = std::process::Command::new("sync").status();
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (rpc_port, metrics_port, udp_port) = (free_port()?, free_port()?, free_port()?);
    let mut config = toml::Table::new();
    for (section, key, value) in [
        ("node", "log_level", "warn".to_string()),
        ("node", "data_dir", dir.join("data").display().to_string()),
        ("node", "genesis", genesis.display().to_string()),
        ("rpc", "listen", format!("127.0.0.1:{rpc_port}")),
        ("metrics", "listen", format!("127.0.0.1:{metrics_port}")),
        ("udp", "listen", format!("127.0.0.1:{udp_port}")),
    ] {
        let mut entry = toml::Table::new();
        entry.insert(key.into(), toml::Value::String(value));
        merge(&mut config, toml::Table::from_iter([(section.to_string(), toml::Value::Table(entry))]));
    }
    merge(&mut config, TEPHRA_BENCH_CONFIG.parse().expect("valid TOML"));
    merge(&mut config, programs.tephra_extra.parse().map_err(|e| format!("--tephra-config: {e}"))?);
    let udp_address = config["udp"]["listen"].as_str().map(str::to_string);
    let config_path = dir.join("tephra.toml");
    fs::write(&config_path, toml::to_string(&config).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let log_path = dir.join("tephra.log");
    let mut command = Command::new(&programs.tephra);
    command.arg("run").arg("--config").arg(&config_path);
    let mut child = spawn_logged(&mut command, &log_path, "build it: cargo build --release -p tephra-node")?;
    let rpc_url = format!("http://127.0.0.1:{rpc_port}");
    wait_answering(&rpc_url, &mut child, "tephra", &log_path)?;
    // JSON-RPC answers before the sequencer is ready (the replay, the
    // signer); /ready says when it is.
    let ready_url = format!("http://127.0.0.1:{metrics_port}/ready");
    let agent = ureq::Agent::new_with_defaults();
    wait_until(&mut child, "tephra", &log_path, "ready", || agent.get(&ready_url).call().is_ok())?;
    let metrics_url = Some(format!("http://127.0.0.1:{metrics_port}"));
    Ok(Node { name: "tephra".into(), child, rpc_url, udp_address, metrics_url, signs_blocks: true })
}

/// A fresh anvil on `genesis`: automine (a block per transaction) when
/// `block_time_s` is `None`, else interval mining.
pub fn start_anvil(programs: &Programs, dir: &Path, genesis: &Path, block_time_s: Option<u64>) -> Result<Node, String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let port = free_port()?;
    let mining: Vec<String> = block_time_s.map(|s| vec!["--block-time".into(), s.to_string()]).unwrap_or_default();
    let mut command = Command::new(&programs.anvil);
    command
        .arg("--init")
        .arg(genesis)
        .args(["--hardfork", "osaka", "--port", &port.to_string(), "--gas-limit", "1000000000", "--silent"])
        .args(&mining);
    let log_path = dir.join("anvil.log");
    let mut child = spawn_logged(&mut command, &log_path, "install it: npm ci")?;
    let rpc_url = format!("http://127.0.0.1:{port}");
    wait_answering(&rpc_url, &mut child, "anvil", &log_path)?;
    let name = match block_time_s {
        Some(s) => format!("anvil (interval mining, {s} s)"),
        None => "anvil (automine)".into(),
    };
    Ok(Node { name, child, rpc_url, udp_address: None, metrics_url: None, signs_blocks: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_config_merges_table_by_table() {
        let mut base: toml::Table = TEPHRA_BENCH_CONFIG.parse().unwrap();
        merge(&mut base, "[udp]\nsource_txs_per_s = 5\n[exec]\nshards = 2\n".parse().unwrap());
        assert_eq!(base["udp"]["source_txs_per_s"].as_integer(), Some(5));
        assert_eq!(base["udp"]["source_burst_txs"].as_integer(), Some(10_000_000));
        assert_eq!(base["exec"]["shards"].as_integer(), Some(2));
    }
}
