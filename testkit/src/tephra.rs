//! A `tephra run` process for tests and benchmarks: its config file written
//! in a directory of the caller's, its listeners on free loopback ports, its
//! output in a log file there, started, waited for, signalled, restarted on
//! the same data dir, and killed when it drops.
//!
//! The kit depends on no tephra crate: the caller names the binary
//! (`env!("CARGO_BIN_EXE_tephra")` in the node's tests and benchmarks).
//!
//! ```no_run
//! # use tephra_testkit::tephra::TephraProcess;
//! let mut node = TephraProcess::builder("target/debug/tephra", "/tmp/node")
//!     .config("[block]\nblock_time_s = 2\n")
//!     .start()
//!     .unwrap();
//! node.kill9();
//! node.start().unwrap(); // the same config and data dir
//! ```

use std::{
    ffi::OsString,
    fs::OpenOptions,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;

use crate::{free_port, free_udp_port, rpc::RpcClient};

/// How long a started process may take to be ready, unless told otherwise.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How long one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The lines of the log a failure to start quotes.
const LOG_TAIL_LINES: usize = 20;

/// When a started process counts as up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// GET /ready on the metrics listener answers 200: the node has
    /// replayed its data and takes transactions (the JSON-RPC server is up
    /// before).
    Ready,
    /// JSON-RPC answers `eth_chainId`; /ready may still hold back (say, an
    /// HA leader whose sync standby has not joined yet).
    Answering,
}

/// Why a tephra was not configured, started or ready.
#[derive(Debug, thiserror::Error)]
pub enum TephraError {
    /// The directory, the config file or the log could not be made.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// A layer set `listen` of `[rpc]`, `[metrics]` or `[udp]` to a non-string.
    #[error("the config's listen addresses must be strings")]
    ListenNotString,
    #[error(transparent)]
    Toml(#[from] toml::ser::Error),
    /// The log's handle could not be shared between stdout and stderr.
    #[error("{0}")]
    LogHandle(std::io::Error),
    /// `spawn` of a process that is still running (as `pid`).
    #[error("tephra is running already (pid {pid})")]
    Running { pid: u32 },
    /// `program` (the binary, or the prefix's first word) did not start.
    #[error("{program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    /// `wait_ready` of a process never started, or stopped.
    #[error("tephra is not running")]
    NotRunning,
    /// The process exited with `status` before it was ready; `log` says
    /// where its output is and how it ends.
    #[error("tephra exited ({status}) before it was ready; {log}")]
    Exited { status: ExitStatus, log: String },
    /// The process was not `readiness` within `within`; `log` as for `Exited`.
    #[error("tephra not ready ({readiness:?}) within {within:?}; {log}")]
    NotReady { readiness: Readiness, within: Duration, log: String },
}

/// How to run a tephra: see [`TephraProcess::builder`].
#[derive(Debug, Clone)]
pub struct TephraBuilder {
    binary: PathBuf,
    dir: PathBuf,
    layers: Vec<toml::Table>,
    env: Vec<(OsString, OsString)>,
    prefix: Vec<OsString>,
    log: Option<String>,
    own_group: bool,
    readiness: Readiness,
    ready_within: Duration,
}

impl TephraBuilder {
    /// Merges the TOML `layer` over the config so far, table by table (a
    /// later layer wins, so it may set the listen addresses itself).
    /// Panics when `layer` is not TOML.
    pub fn config(mut self, layer: &str) -> Self {
        self.layers.push(layer.parse().unwrap_or_else(|e| panic!("the config layer is not TOML: {e}\n{layer}")));
        self
    }

    /// An environment variable of the process (and of [`TephraProcess::command`]).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// A command the binary runs under, with its arguments: `["ip", "netns",
    /// "exec", namespace]`, say. It must exec the binary (the process is
    /// signalled by its id).
    pub fn prefix<S: Into<OsString>>(mut self, command: impl IntoIterator<Item = S>) -> Self {
        self.prefix = command.into_iter().map(Into::into).collect();
        self
    }

    /// The process's stdout and stderr go to `name` in the directory,
    /// appended to on each start (default: tephra.log).
    pub fn log_file(mut self, name: &str) -> Self {
        self.log = Some(name.to_string());
        self
    }

    /// The process's output goes nowhere.
    pub fn discard_output(mut self) -> Self {
        self.log = None;
        self
    }

    /// The process leads its own process group, and the whole group is
    /// killed (kill -9 and drop). Otherwise it stays in the caller's group,
    /// so that an interrupted test run takes it along.
    pub fn own_process_group(mut self) -> Self {
        self.own_group = true;
        self
    }

    /// What `start` waits for (default: [`Readiness::Ready`]).
    pub fn ready_when(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    /// How long `start` waits (default: 60 s).
    pub fn ready_within(mut self, limit: Duration) -> Self {
        self.ready_within = limit;
        self
    }

    /// Writes the config file (tephra.toml in the directory, created if
    /// need be): `[node] data_dir` the directory's data/, `[rpc]`,
    /// `[metrics]` and `[udp] listen` free ports on 127.0.0.1, then the
    /// layers. The process is not started.
    pub fn configure(self) -> Result<TephraProcess, TephraError> {
        std::fs::create_dir_all(&self.dir).map_err(io_error(&self.dir))?;
        let mut config: toml::Table = format!(
            "[node]\ndata_dir = {}\n[rpc]\nlisten = \"127.0.0.1:{}\"\n[metrics]\nlisten = \"127.0.0.1:{}\"\n\
             [udp]\nlisten = \"127.0.0.1:{}\"\n",
            toml::Value::from(self.dir.join("data").display().to_string()),
            free_port(),
            free_port(),
            free_udp_port()
        )
        .parse()
        .expect("the base config is TOML");
        for layer in self.layers {
            merge(&mut config, layer);
        }
        let listen = |section: &str| {
            config.get(section).and_then(|s| s.get("listen")).and_then(toml::Value::as_str).map(str::to_string)
        };
        let (rpc, metrics, udp) = (listen("rpc"), listen("metrics"), listen("udp"));
        let (Some(rpc), Some(metrics), Some(udp)) = (rpc, metrics, udp) else {
            return Err(TephraError::ListenNotString);
        };
        let config_path = self.dir.join("tephra.toml");
        let text = toml::to_string(&config)?;
        std::fs::write(&config_path, text).map_err(io_error(&config_path))?;
        Ok(TephraProcess {
            log: self.log.map(|name| self.dir.join(name)),
            binary: self.binary,
            dir: self.dir,
            config: config_path,
            env: self.env,
            prefix: self.prefix,
            own_group: self.own_group,
            readiness: self.readiness,
            ready_within: self.ready_within,
            rpc_url: format!("http://{rpc}"),
            ws_url: format!("ws://{rpc}"),
            metrics_url: format!("http://{metrics}"),
            udp_address: udp,
            child: None,
        })
    }

    /// Configures, starts and waits until ready.
    pub fn start(self) -> Result<TephraProcess, TephraError> {
        let mut process = self.configure()?;
        process.start()?;
        Ok(process)
    }
}

/// A configured tephra, running or not; killed (kill -9) when it drops.
/// The directory stays: the caller removes it.
#[derive(Debug)]
pub struct TephraProcess {
    binary: PathBuf,
    dir: PathBuf,
    config: PathBuf,
    env: Vec<(OsString, OsString)>,
    prefix: Vec<OsString>,
    log: Option<PathBuf>,
    own_group: bool,
    readiness: Readiness,
    ready_within: Duration,
    rpc_url: String,
    ws_url: String,
    metrics_url: String,
    udp_address: String,
    child: Option<Child>,
}

impl TephraProcess {
    /// `binary run --config <dir>/tephra.toml`, its data in `dir`/data.
    pub fn builder(binary: impl Into<PathBuf>, dir: impl Into<PathBuf>) -> TephraBuilder {
        TephraBuilder {
            binary: binary.into(),
            dir: dir.into(),
            layers: Vec::new(),
            env: Vec::new(),
            prefix: Vec::new(),
            log: Some("tephra.log".into()),
            own_group: false,
            readiness: Readiness::Ready,
            ready_within: READY_WITHIN,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The config file: edit it between stops and starts, if need be.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// What the process has logged so far (empty without a log).
    pub fn log(&self) -> String {
        self.log.as_ref().and_then(|path| std::fs::read_to_string(path).ok()).unwrap_or_default()
    }

    /// http://… of the JSON-RPC listener.
    pub fn rpc_url(&self) -> &str {
        &self.rpc_url
    }

    /// ws://… of the JSON-RPC listener.
    pub fn ws_url(&self) -> &str {
        &self.ws_url
    }

    /// http://… of the metrics listener (/metrics, /health, /ready).
    pub fn metrics_url(&self) -> &str {
        &self.metrics_url
    }

    /// The UDP ingress's address.
    pub fn udp_address(&self) -> &str {
        &self.udp_address
    }

    /// The binary, under the prefix and with the environment, for another
    /// subcommand (`tephra ha status --config …`, say).
    pub fn command(&self) -> Command {
        let mut command = match self.prefix.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Starts (or restarts, on the same config and data) and waits until ready.
    pub fn start(&mut self) -> Result<(), TephraError> {
        self.spawn()?;
        self.wait_ready()
    }

    /// Starts the process without waiting for it.
    pub fn spawn(&mut self) -> Result<(), TephraError> {
        if let Some(child) = &mut self.child
            && matches!(child.try_wait(), Ok(None))
        {
            return Err(TephraError::Running { pid: child.id() });
        }
        let mut command = self.command();
        command.arg("run").arg("--config").arg(&self.config).stdin(Stdio::null());
        match &self.log {
            Some(path) => {
                let log = OpenOptions::new().create(true).append(true).open(path).map_err(io_error(path))?;
                command.stdout(log.try_clone().map_err(TephraError::LogHandle)?).stderr(log);
            }
            None => {
                command.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        if self.own_group {
            command.process_group(0);
        }
        let child = command.spawn().map_err(|source| TephraError::Spawn {
            program: command.get_program().to_string_lossy().into_owned(),
            source,
        })?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the started process is ready (see [`Readiness`]), in the
    /// calling thread's network namespace; fails when it exits first or is
    /// not ready in time, quoting its log.
    pub fn wait_ready(&mut self) -> Result<(), TephraError> {
        let client = RpcClient::new(self.rpc_url.clone()).timeout(PROBE_TIMEOUT);
        let ready_url = format!("{}/ready", self.metrics_url);
        let deadline = Instant::now() + self.ready_within;
        loop {
            let child = self.child.as_mut().ok_or(TephraError::NotRunning)?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(TephraError::Exited { status, log: self.log_tail() });
            }
            let ready = match self.readiness {
                Readiness::Ready => client.get(&ready_url).is_ok_and(|(status, _)| status == 200),
                Readiness::Answering => client.try_call("eth_chainId", json!([])).is_ok(),
            };
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(TephraError::NotReady {
                    readiness: self.readiness,
                    within: self.ready_within,
                    log: self.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process's id, from its start until it is killed, stopped or
    /// seen to exit.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The process's resident memory, from /proc; `None` when it is not running.
    pub fn rss_bytes(&self) -> Option<u64> {
        rss_bytes(self.child.as_ref()?.id())
    }

    /// A field of the process's /proc status (`THP_enabled`, say).
    pub fn status_field(&self, field: &str) -> Option<String> {
        status_field(self.child.as_ref()?.id(), field)
    }

    /// Sends `signal` (a `kill -s` name: STOP, CONT, TERM) to the process.
    /// Panics when it was never started or the signal cannot be sent.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("tephra was started").id().to_string();
        let sent = Command::new("kill").args(["-s", signal, &pid]).status().expect("kill runs");
        assert!(sent.success(), "kill -s {signal} {pid}");
    }

    /// SIGKILL (to the whole group, if it has its own), no chance to flush
    /// anything, and waits for the exit. Nothing when not started.
    pub fn kill9(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        // A group is killed only while its leader lives: a reaped leader's
        // id may belong to a new group.
        if self.own_group && matches!(child.try_wait(), Ok(None)) {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGTERM and waits for the exit: its status; `None` when not started.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        child.wait().ok()
    }

    /// Waits up to `limit` for the process to exit by itself: its status;
    /// `None` if it still runs (or was not started).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            let child = self.child.as_mut()?;
            if let Some(status) = child.try_wait().ok().flatten() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Where to look when it failed to start.
    fn log_tail(&self) -> String {
        let Some(path) = &self.log else { return "its output was discarded".into() };
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        format!("see {}, which ends:\n{tail}", path.display())
    }
}

impl Drop for TephraProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// An I/O error on `path`, as a `TephraError`.
fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TephraError + '_ {
    move |source| TephraError::Io { path: path.to_path_buf(), source }
}

/// The resident memory of process `pid`, from /proc.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let kib = status_field(pid, "VmRSS")?;
    Some(kib.trim_end_matches("kB").trim().parse::<u64>().ok()? * 1024)
}

/// The value of `field` in process `pid`'s /proc status, trimmed.
pub fn status_field(pid: u32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let value = status.lines().find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?;
    Some(value.trim().to_string())
}

/// Merges `overlay` into `base`, table by table (the overlay wins).
pub fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base)), toml::Value::Table(overlay)) => merge(base, overlay),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_merge_over_the_picked_addresses_table_by_table() {
        let dir = crate::fresh_dir("testkit-tephra-config");
        let process = TephraProcess::builder("/bin/false", &dir)
            .config("[udp]\nlisten = \"10.0.0.1:9000\"\nsource_txs_per_s = 1\n[exec]\nshards = 2\n")
            .config("[udp]\nsource_txs_per_s = 5\n")
            .configure()
            .unwrap();
        let config: toml::Table = std::fs::read_to_string(process.config_path()).unwrap().parse().unwrap();
        assert_eq!(config["udp"]["listen"].as_str(), Some("10.0.0.1:9000"));
        assert_eq!(config["udp"]["source_txs_per_s"].as_integer(), Some(5));
        assert_eq!(config["exec"]["shards"].as_integer(), Some(2));
        assert_eq!(config["node"]["data_dir"].as_str(), Some(dir.join("data").to_str().unwrap()));
        assert_eq!(process.udp_address(), "10.0.0.1:9000");
        assert!(process.rpc_url().starts_with("http://127.0.0.1:"), "{}", process.rpc_url());
        assert_eq!(process.ws_url().replace("ws://", "http://"), process.rpc_url());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_process_that_exits_before_it_is_ready_fails_the_start_quoting_its_log() {
        let dir = crate::fresh_dir("testkit-tephra-exits");
        // sh -c '…' sh <binary> run --config …: a tephra that dies at once.
        let error = TephraProcess::builder("ignored", &dir)
            .prefix(["sh", "-c", "echo no genesis here >&2; exit 3", "sh"])
            .start()
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(error, TephraError::Exited { .. }), "{error:?}");
        let error = error.to_string();
        assert!(error.contains("exited") && error.contains("no genesis here"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_process_that_never_gets_ready_fails_the_start_and_is_killed() {
        let dir = crate::fresh_dir("testkit-tephra-never");
        let mut never = TephraProcess::builder("ignored", &dir)
            .prefix(["sh", "-c", "sleep 30", "sh"])
            .ready_when(Readiness::Answering)
            .ready_within(Duration::from_millis(200))
            .own_process_group()
            .discard_output()
            .configure()
            .unwrap();
        let error = never.start().unwrap_err();
        assert!(matches!(error, TephraError::NotReady { readiness: Readiness::Answering, .. }), "{error:?}");
        let error = error.to_string();
        assert!(error.contains("not ready (Answering) within 200ms") && error.contains("discarded"), "{error}");
        assert!(never.rss_bytes().is_some());
        let running = never.spawn().unwrap_err();
        assert!(matches!(running, TephraError::Running { pid } if Some(pid) == never.pid()), "{running:?}");
        assert!(running.to_string().contains("running already"));
        let pid = never.pid().unwrap();
        never.kill9();
        assert_eq!(never.pid(), None);
        // The group, the shell's sleep with it, is gone (or dead, unreaped).
        crate::wait_until("the group killed", Duration::from_secs(5), || live_in_group(pid) == 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The processes of group `group` that are not zombies.
    fn live_in_group(group: u32) -> usize {
        let stats = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok());
        stats
            .filter(|stat| {
                // pid (comm) state ppid pgrp …
                let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
                fields.len() > 2 && fields[0] != "Z" && fields[2] == group.to_string()
            })
            .count()
    }
}
