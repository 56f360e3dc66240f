//! The reliability benchmark's node: a generated genesis, a `tephra` process
//! on free loopback ports, a JSON-RPC call and percentiles. (Throughput and
//! latency against anvil live in the bench harness, bench/.)

#![allow(dead_code, reason = "each benchmark uses its own part of the support")]

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
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
    RpcClient::with_agent(url, agent.clone()).try_call(method, params).map_err(|e| e.to_string())
}

/// The release `tephra` on `genesis`, `extra` TOML merged into its config
/// (a listen address `extra` names is kept), its output discarded, up once
/// it answers JSON-RPC. The process starts in the calling thread's network
/// namespace.
pub fn start_tephra(dir: &Path, genesis: &Path, extra: &str) -> Peer {
    start_tephra_binary(Path::new(env!("CARGO_BIN_EXE_tephra")), dir, genesis, extra)
}

/// As `start_tephra`, with the `tephra` at `binary` (another build, to
/// compare against in the same run).
pub fn start_tephra_binary(binary: &Path, dir: &Path, genesis: &Path, extra: &str) -> Peer {
    let defaults =
        format!("[node]\ngenesis = {}\nlog_level = \"warn\"\n", toml::Value::from(genesis.display().to_string()));
    let process = TephraProcess::builder(binary, dir)
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

const BLOCK_KEY: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const SECRET: &str = "a shared secret of the pair, at least 32 bytes long";

/// A pair member on `binary`: its metrics address (for its role) and the node.
pub fn pair_member(
    binary: &Path,
    dir: &Path,
    genesis: &Path,
    (id, peer): (&str, &str),
    etcd: &str,
    mode: &str,
    prefix: &str,
) -> (String, Peer) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("ha.secret"), SECRET).unwrap();
    std::fs::write(data.join("block.key"), BLOCK_KEY).unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let extra = format!(
        "[metrics]\nlisten = \"{metrics}\"\n[ha]\nenabled = true\nnode_id = \"{id}\"\npeers = [\"{peer}\"]\n\
         etcd_endpoints = [\"{etcd}\"]\netcd_prefix = \"{prefix}\"\nreplication = \"{mode}\"\n\
         replication_listen = \"127.0.0.1:{}\"\n",
        free_port()
    );
    let node = start_tephra_binary(binary, dir, genesis, &extra);
    (metrics, node)
}

/// The role its metrics report: 2 leading, 1 following, 0 neither (or unreachable).
pub fn role(metrics: &str) -> u64 {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(1))).build().into();
    agent
        .get(format!("http://{metrics}/metrics"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .and_then(|text| text.lines().find_map(|l| l.strip_prefix("tephra_ha_role ")).map(str::to_string))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The pair's leader, once one leads with the other following (at most 30 s).
pub fn leader_of<'a>(members: [(&str, &'a Peer); 2]) -> &'a Peer {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let roles = members.map(|(metrics, _)| role(metrics));
        match roles {
            [2, 1] => return members[0].1,
            [1, 2] => return members[1].1,
            _ => assert!(Instant::now() < deadline, "no leader with a following standby in 30 s"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One transfer per UDP request (docs/wire.md) from `key`, nonce after
/// nonce, as a game client sends them.
pub struct TransferClient {
    socket: std::net::UdpSocket,
    udp: String,
    key: DevKey,
    nonce: u64,
    request: Vec<u8>,
    reply: Vec<u8>,
}

impl TransferClient {
    pub fn new(udp: &str, key: DevKey, first_nonce: u64) -> Self {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let reply = vec![0u8; tephra_types::wire::DATAGRAM_SIZE_MAX_BYTES];
        Self { socket, udp: udp.to_string(), key, nonce: first_nonce, request: Vec::new(), reply }
    }

    /// Sends the next transfer and waits for its answer: true once it is
    /// preconfirmed (the nonce moves on), false on a timeout or a stale
    /// reply (the same nonce goes again); any other answer is a failure.
    pub fn round_trip(&mut self) -> bool {
        use alloy_eips::eip2718::Encodable2718;
        use tephra_types::wire::{self, TxReply};
        let to = alloy_primitives::Address::with_last_byte(0xb0);
        let raw = self.key.transfer(31337, self.nonce, to, alloy_primitives::U256::from(1)).encoded_2718();
        self.request.clear();
        wire::encode_request(self.nonce, false, &[&raw], &mut self.request);
        self.socket.send_to(&self.request, &self.udp).unwrap();
        let Ok((len, _)) = self.socket.recv_from(&mut self.reply) else { return false };
        match wire::decode_reply(&self.reply[..len]) {
            Some((id, Ok(answers))) if id == self.nonce => match answers.first() {
                Some(TxReply::Preconfirmed { .. }) => {
                    self.nonce += 1;
                    true
                }
                other => panic!("transfer {} not preconfirmed: {other:?}", self.nonce),
            },
            _ => false,
        }
    }
}
