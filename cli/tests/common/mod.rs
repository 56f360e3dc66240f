//! A real `tephra` process for end-to-end tests (the kit's launcher), on
//! free loopback ports and a fresh data dir, with a small JSON-RPC client.

#![allow(dead_code, reason = "each test file uses its own part of the harness")]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::LazyLock,
    time::{Duration, Instant},
};

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, U256, hex};
use serde_json::{Value, json};
use tephra_exec::dev::{DEV_PRIVATE_KEYS, DevKey};
use tephra_testkit::{Need, require, rpc::RpcClient, tephra::TephraProcess};
#[allow(unused_imports, reason = "each test binary uses a part of the kit")]
pub use tephra_testkit::{free_port, free_udp_port, fresh_dir, npm_tool, rpc::quantity, workspace_root};

/// The first dev key (exec/src/dev.rs) as cast takes it, and its address.
pub static DEV_KEY_0: LazyLock<String> = LazyLock::new(|| DEV_PRIVATE_KEYS[0].to_string());
pub static DEV_ADDRESS_0: LazyLock<String> = LazyLock::new(|| DevKey::dev(0).address().to_checksum(None));

pub struct TephraNode {
    process: TephraProcess,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub rpc_url: String,
    pub ws_url: String,
    pub metrics_url: String,
    pub udp_address: String,
    client: RpcClient,
}

impl TephraNode {
    /// A node on a fresh data dir; `extra` is merged into its config file.
    pub fn start(name: &str, extra: &str) -> Self {
        Self::start_with_env(name, extra, &[])
    }

    /// As `start`, with extra environment for the process (SOFTHSM2_CONF, say).
    pub fn start_with_env(name: &str, extra: &str, env: &[(&str, &str)]) -> Self {
        let mut node = Self::configure(name, extra, env);
        node.spawn();
        node
    }

    /// The data dir and config of a node, not started yet (the config file
    /// may be edited before each start).
    pub fn configure(name: &str, extra: &str, env: &[(&str, &str)]) -> Self {
        let dir = fresh_dir(&format!("e2e-{name}"));
        let mut builder = TephraProcess::builder(env!("CARGO_BIN_EXE_tephra"), &dir).config(extra).log_file("node.log");
        for (key, value) in env {
            builder = builder.env(key, value);
        }
        let process = builder.configure().unwrap_or_else(|e| panic!("{e}"));
        Self {
            dir,
            config: process.config_path().to_path_buf(),
            rpc_url: process.rpc_url().to_string(),
            ws_url: process.ws_url().to_string(),
            metrics_url: process.metrics_url().to_string(),
            udp_address: process.udp_address().to_string(),
            client: RpcClient::new(process.rpc_url()),
            process,
        }
    }

    /// Starts (or restarts) the process on the same data dir and waits until ready.
    pub fn spawn(&mut self) {
        self.process.start().unwrap_or_else(|e| panic!("{e}"));
    }

    /// The process's resident memory, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        self.process.rss_bytes().expect("tephra runs")
    }

    /// A field of the process's /proc status.
    pub fn status_field(&self, field: &str) -> String {
        self.process.status_field(field).unwrap_or_else(|| panic!("tephra runs and its status has {field}"))
    }

    /// A counter or gauge from /metrics (0 when absent).
    pub fn metric(&self, name: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// Sends `signal` (a `kill -s` name: STOP, CONT, TERM) to the process.
    pub fn signal(&self, signal: &str) {
        self.process.signal(signal);
    }

    /// Waits up to `wait` for the process to exit by itself: its status.
    pub fn wait_exit(&mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        self.process.wait_exit(wait)
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(status) = self.process.stop() {
            assert!(status.success(), "tephra exited with {status}");
        }
    }

    /// A JSON-RPC call: the result, or the error object.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, Value> {
        self.client.call(method, params)
    }

    pub fn rpc(&self, method: &str, params: Value) -> Value {
        self.client.rpc(method, params)
    }

    pub fn post(&self, body: &Value) -> Value {
        self.client.post(body)
    }

    /// Announces a request body of `length` bytes and returns the status
    /// line the server answers with, before the body is sent.
    pub fn status_for_announced_body(&self, length: usize) -> String {
        status_for_announced_body(&self.rpc_url, length)
    }

    /// /ready's status code and body.
    pub fn ready(&self) -> (u16, String) {
        self.client.get(&format!("{}/ready", self.metrics_url)).expect("/ready answers")
    }

    pub fn metrics(&self) -> String {
        self.client.get(&format!("{}/metrics", self.metrics_url)).expect("/metrics answers").1
    }

    /// Runs `cast SUBCOMMAND --rpc-url <this node> ARGS...`.
    pub fn cast(&self, args: &[&str]) -> String {
        let (subcommand, rest) = args.split_first().expect("a cast subcommand");
        cast(&[&[*subcommand, "--rpc-url", &self.rpc_url], rest].concat())
    }

    /// Runs `tephra ARGS... --config <this node's config>` to completion.
    pub fn tephra(&self, args: &[&str]) -> Result<String, String> {
        let output =
            self.process.command().args(args).args(["--config", self.config.to_str().unwrap()]).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if output.status.success() {
            Ok(stdout)
        } else {
            Err(format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)))
        }
    }

    /// `tephra verify-block` of `block` against this node: its output, which
    /// must say it verified.
    pub fn verify_block(&self, block: &str) -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_tephra"))
            .args(["verify-block", "--rpc", &self.rpc_url, "--block", block])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(output.status.success(), "verify-block {block}: {stdout}{}", String::from_utf8_lossy(&output.stderr));
        stdout
    }

    /// Waits until the newest signed block is at least `number`.
    pub fn wait_for_signed_block(&self, number: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while quantity(&self.rpc("eth_getBlockByNumber", json!(["finalized", false]))["number"]) < number {
            assert!(Instant::now() < deadline, "block {number} not signed in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_for_block(&self, number: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while quantity(&self.rpc("eth_blockNumber", json!([]))) < number {
            assert!(Instant::now() < deadline, "block {number} not sealed in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TephraNode {
    fn drop(&mut self) {
        self.kill9();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Announces a request body of `length` bytes to the JSON-RPC server at
/// `rpc_url` and returns the status line it answers with, before the body is sent.
pub fn status_for_announced_body(rpc_url: &str, length: usize) -> String {
    use std::io::{BufRead, BufReader, Write};
    let address = rpc_url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "POST / HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n{{"
    )
    .unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line.trim().to_string()
}

/// Runs `cast` with exactly `args`.
pub fn cast(args: &[&str]) -> String {
    let output = Command::new(npm_tool("cast")).args(args).output().unwrap();
    assert!(output.status.success(), "cast {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// A signed dev transaction from `cast mktx`.
pub fn signed_transfer(node: &TephraNode, key: &str, nonce: u64, to: &str, value: u64) -> String {
    node.cast(&[
        "mktx",
        "--private-key",
        key,
        "--nonce",
        &nonce.to_string(),
        "--gas-limit",
        "21000",
        "--gas-price",
        "20gwei",
        "--priority-gas-price",
        "1gwei",
        to,
        "--value",
        &value.to_string(),
    ])
}

/// Receipts asked for in one JSON-RPC batch (below `rpc.batch_size_max`).
const RECEIPT_BATCH: usize = 100;

/// Where each transaction was promised (block number and index), and how
/// many of the promises came over UDP.
#[derive(Default)]
pub struct Kept {
    pub positions: HashMap<B256, (u64, u64)>,
    pub over_udp: usize,
}

pub type Promises = Arc<Mutex<Kept>>;

pub fn raw_transfer(key: &DevKey, nonce: u64, value: u64) -> Vec<u8> {
    key.transfer(31337, nonce, Address::with_last_byte(0xee), U256::from(value)).encoded_2718()
}

pub fn pending_nonce(node: &TephraNode, key: &DevKey) -> u64 {
    quantity(&node.rpc("eth_getTransactionCount", json!([key.address(), "pending"])))
}

/// One sender over JSON-RPC until the node dies: each receipt is a promise.
pub fn rpc_load(url: String, key: DevKey, mut nonce: u64, promised: Promises) {
    let client = RpcClient::new(url);
    loop {
        let raw = format!("0x{}", hex::encode(raw_transfer(&key, nonce, 1)));
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransactionSync", "params": [raw, 5000]});
        let Ok(reply) = client.try_post(&body) else { return };
        let receipt = &reply["result"];
        if receipt.is_null() {
            return;
        }
        let hash: B256 = receipt["transactionHash"].as_str().unwrap().parse().unwrap();
        let at = (quantity(&receipt["blockNumber"]), quantity(&receipt["transactionIndex"]));
        promised.lock().unwrap().positions.insert(hash, at);
        nonce += 1;
    }
}

/// Every promise holds: the receipt is there, at the promised position, and
/// the transaction succeeded.
pub fn check_promises(node: &TephraNode, promised: &HashMap<B256, (u64, u64)>) {
    let lost = lost_promises(node, promised);
    assert!(lost.is_empty(), "preconfirmed {lost:?} lost in a crash");
}

/// The promised transactions the node does not hold, once it has sealed the
/// highest promised block; those it holds are at the promised position and
/// succeeded.
pub fn lost_promises(node: &TephraNode, promised: &HashMap<B256, (u64, u64)>) -> Vec<B256> {
    let Some(last_block) = promised.values().map(|at| at.0).max() else { return Vec::new() };
    node.wait_for_block(last_block);
    let hashes: Vec<&B256> = promised.keys().collect();
    let mut lost = Vec::new();
    for chunk in hashes.chunks(RECEIPT_BATCH) {
        let batch = tephra_testkit::rpc::batch("eth_getTransactionReceipt", chunk.iter().map(|hash| json!([hash])));
        let replies = node.post(&batch);
        let replies = replies.as_array().expect("a batch reply");
        assert_eq!(replies.len(), chunk.len());
        for reply in replies {
            let hash = chunk[usize::try_from(reply["id"].as_u64().unwrap()).unwrap()];
            let receipt = &reply["result"];
            if receipt.is_null() {
                lost.push(*hash);
                continue;
            }
            assert_eq!(
                (quantity(&receipt["blockNumber"]), quantity(&receipt["transactionIndex"])),
                promised[hash],
                "{hash} moved"
            );
            assert_eq!(receipt["status"], "0x1", "{hash}");
        }
    }
    lost
}

/// A FUSE passthrough file system (tests/common/faultfs.py) mounted while
/// this lives: every fsync takes `fsync_delay_ms` longer, and writing
/// "hang" or "fail" to `control` makes its file operations wait or fail
/// until the file says otherwise. Needs root, /dev/fuse and Debian's
/// python3-fusepy (scripts/deps.sh), declared as the test's prerequisites.
pub struct FuseDisk {
    process: Child,
    mountpoint: PathBuf,
}

/// Debian's Python, which has python3-fusepy (a `python3` earlier on the
/// PATH may be another build without it).
const PYTHON: &str = "/usr/bin/python3";
/// How long the FUSE script may take to mount.
const FUSE_MOUNT_TIMEOUT: Duration = Duration::from_secs(10);

impl FuseDisk {
    /// The disk, or None where a prerequisite is missing and the test skips
    /// (see `tephra_testkit::require`). With them all present a mount that
    /// fails is a test failure, with the script's own error.
    pub fn mount(backing: &Path, mountpoint: &Path, fsync_delay_ms: u64, control: Option<&Path>) -> Option<Self> {
        let needs = [
            Need::root(),
            Need::file("/dev/fuse", "the kernel's FUSE device"),
            Need::command("fusermount3", "scripts/deps.sh installs fuse3"),
            Need::python_module(PYTHON, "fusepy", "scripts/deps.sh installs python3-fusepy"),
        ];
        if !require(&needs) {
            return None;
        }
        std::fs::create_dir_all(backing).unwrap();
        std::fs::create_dir_all(mountpoint).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/faultfs.py");
        let errors = mountpoint.with_extension("faultfs.log");
        let mut command = Command::new(PYTHON);
        command.arg(script).arg(backing).arg(mountpoint).arg(fsync_delay_ms.to_string());
        if let Some(control) = control {
            command.arg(control);
        }
        let stderr = std::fs::File::create(&errors).unwrap();
        let process = command.stderr(stderr).spawn().expect("python3 starts faultfs.py");
        let mut disk = Self { process, mountpoint: mountpoint.to_path_buf() };
        let mounted = format!(" {} fuse", mountpoint.display());
        let deadline = Instant::now() + FUSE_MOUNT_TIMEOUT;
        while !std::fs::read_to_string("/proc/mounts").unwrap().contains(&mounted) {
            let exited = disk.process.try_wait().unwrap();
            let said = || std::fs::read_to_string(&errors).unwrap_or_default();
            assert!(exited.is_none(), "faultfs.py exited ({exited:?}) without mounting: {}", said());
            assert!(Instant::now() < deadline, "no FUSE mount within {FUSE_MOUNT_TIMEOUT:?}: {}", said());
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(disk)
    }
}

impl Drop for FuseDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mountpoint).status();
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Polls `done` every 20 ms, for at most 20 s.
pub fn wait_until(what: &str, done: impl FnMut() -> bool) {
    tephra_testkit::wait_until(what, Duration::from_secs(20), done);
}

/// The SoftHSM2 PKCS#11 module (Debian's softhsm2).
pub const SOFTHSM2_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A SoftHSM2 token labelled "tephra" (user PIN in `dir`/pin) whose store is
/// `token_dir`: the node config's [signer] slice for its key "block", and the
/// SOFTHSM2_CONF the node and the tools need. None where SoftHSM2 is
/// missing and the test skips (see `tephra_testkit::require`).
pub fn softhsm2_token(dir: &Path, token_dir: &Path) -> Option<(String, String)> {
    let needs = [
        Need::file(SOFTHSM2_MODULE, "scripts/deps.sh installs softhsm2"),
        Need::command("softhsm2-util", "scripts/deps.sh installs softhsm2"),
    ];
    if !require(&needs) {
        return None;
    }
    std::fs::create_dir_all(token_dir).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(&conf, format!("directories.tokendir = {}\nobjectstore.backend = file\n", token_dir.display()))
        .unwrap();
    std::fs::write(dir.join("pin"), "4321\n").unwrap();
    let init = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args(["--init-token", "--free", "--label", "tephra", "--pin", "4321", "--so-pin", "8765"])
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let signer = format!(
        "[signer]\nkind = \"pkcs11\"\npkcs11_module = \"{SOFTHSM2_MODULE}\"\npkcs11_token_label = \"tephra\"\npkcs11_pin_file = \"{}\"\npkcs11_key_label = \"block\"\n",
        dir.join("pin").display()
    );
    Some((signer, conf.to_str().unwrap().to_string()))
}

/// A blocking TCP connection to the node's JSON-RPC port from `source`.
pub fn connect_from(runtime: &tokio::runtime::Runtime, source: &str, rpc: &str) -> std::net::TcpStream {
    let address: std::net::SocketAddr = rpc.trim_start_matches("http://").parse().unwrap();
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(source.parse().unwrap()).unwrap();
        socket.connect(address).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream
}

/// One HTTP POST of `body` from `source`: the reply's JSON.
pub fn post_from(
    runtime: &tokio::runtime::Runtime,
    source: &str,
    rpc: &str,
    body: &serde_json::Value,
) -> serde_json::Value {
    use std::io::{Read, Write};
    let mut stream = connect_from(runtime, source, rpc);
    let body = body.to_string();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        rpc.trim_start_matches("http://"),
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let (_, json) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {reply}"))
}
