//! One TOML file, every key in config/default.toml. Each part of the node gets
//! its own slice. Unknown keys are refused; a bad value names its key.

use std::{net::SocketAddr, ops::RangeInclusive, path::PathBuf};

use serde::Deserialize;
use tephra_exec::pool::PoolLimits;
use tephra_types::limits::*;

/// The embedded defaults: config/default.toml.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: NodeConfig,
    pub block: BlockConfig,
    pub pool: PoolLimits,
    pub verify: VerifyConfig,
    pub exec: ExecConfig,
    pub sequencer: SequencerConfig,
    pub log: LogConfig,
    pub rpc: RpcConfig,
    pub udp: UdpConfig,
    pub net: tephra_dataplane::NetConfig,
    pub topology: tephra_dataplane::topology::TopologyConfig,
    pub host: HostConfig,
    pub metrics: MetricsConfig,
    pub signer: SignerConfig,
    pub ha: HaConfig,
    pub l1: L1Config,
    pub batcher: BatcherConfig,
    pub history: HistoryConfig,
    pub trace: TraceConfig,
    pub interop: InteropConfig,
}

/// `[interop]`: this chain's Hyperlane validator (`src/interop.rs`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InteropConfig {
    pub validator: bool,
    /// This chain's Hyperlane domain, and its contracts (`tephra interop deploy`).
    pub domain: u32,
    pub mailbox: alloy_primitives::Address,
    pub merkle_tree_hook: alloy_primitives::Address,
    /// The first block that may hold the hook's insertions (its deployment's).
    pub start_block: u64,
    pub attest: Attest,
    /// The checkpoint syncer's directory (relative to data_dir).
    pub checkpoint_dir: PathBuf,
    /// The validator's tree and position (relative to data_dir).
    pub state_file: PathBuf,
    /// The validator key's guard state and audit log (relative to data_dir).
    pub guard_file: PathBuf,
    pub audit_file: PathBuf,
    pub key: KeyConfig,
}

impl Config {
    /// `[interop]` with the validator on: its contracts named, and its key
    /// neither the block key's nor the batcher key's file, and in an HSM in
    /// production.
    fn validate_interop(&self) -> Result<(), ConfigError> {
        let interop = &self.interop;
        if !interop.validator {
            return Ok(());
        }
        let invalid =
            |key: &'static str, value: String, reason: &'static str| ConfigError::Invalid { key, value, reason };
        if interop.domain == 0 {
            return Err(invalid("interop.domain", "0".into(), "the validator attests a Hyperlane domain: set it"));
        }
        if interop.mailbox.is_zero() || interop.merkle_tree_hook.is_zero() {
            return Err(invalid(
                "interop.mailbox",
                "the zero address".into(),
                "set interop.mailbox and interop.merkle_tree_hook (tephra interop deploy writes them)",
            ));
        }
        let file = &interop.key.key_file;
        if interop.key.kind == SignerKind::File && (*file == self.signer.key_file || *file == self.batcher.key.key_file)
        {
            return Err(invalid(
                "interop.key.key_file",
                file.display().to_string(),
                "the validator key must be its own, not the block or batcher key's file",
            ));
        }
        if self.node.profile == Profile::Production
            && interop.key.kind == SignerKind::File
            && !interop.key.allow_file_key_in_production
        {
            return Err(invalid(
                "interop.key.kind",
                "file".into(),
                "a production node keeps its validator key in an HSM (set interop.key.allow_file_key_in_production to override)",
            ));
        }
        Ok(())
    }
}

/// What the validator attests.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Attest {
    /// A message as soon as its transaction is durably preconfirmed.
    Preconfirmed,
    /// A message once its block is sealed and signed by the block key.
    Sealed,
}

impl Attest {
    pub fn as_str(self) -> &'static str {
        match self {
            Attest::Preconfirmed => "preconfirmed",
            Attest::Sealed => "sealed",
        }
    }
}

/// `[trace]`: the bounds of traces and access lists (`src/rpc/traces.rs`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceConfig {
    /// Wall time one trace request may take.
    pub timeout_ms: u64,
    /// EVM steps and call frames one traced transaction may take.
    pub steps_max: u64,
    /// Bytes a tracer may record (call inputs, memory) per transaction.
    pub recorded_bytes_max: u64,
    /// Trace requests served at once; more answer "busy".
    pub concurrent_max: u32,
}

/// `[history]`: the state history (`src/history.rs`, crate tephra-history).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    pub enabled: bool,
    /// Blocks kept; 0: every block.
    pub blocks_max: u64,
    /// The store's page cache, at most.
    pub cache_bytes: usize,
}

/// `[batcher]`: an OP Stack chain's batcher (`src/batcher/`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatcherConfig {
    pub enabled: bool,
    pub data_availability: DataAvailability,
    pub safe_depth_l1_blocks: u64,
    pub poll_interval_ms: u64,
    pub frame_size_max_bytes: usize,
    pub channel_target_frames: usize,
    pub compression_quality: u32,
    pub channel_duration_max_l1_blocks: u64,
    pub sub_safety_margin_l1_blocks: u64,
    pub txs_in_flight_max: usize,
    pub resubmit_timeout_ms: u64,
    pub max_fee_per_gas_cap_gwei: u64,
    pub read_back_l1_blocks_per_poll_max: u64,
    pub audit_file: PathBuf,
    pub key: KeyConfig,
}

/// Where the batcher puts its frames on L1.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DataAvailability {
    /// One frame a calldata transaction (EIP-1559).
    Calldata,
    /// One frame a blob, a blob a transaction (EIP-4844, type 3).
    Blobs,
}

/// Where a key lives: `[batcher.key]`, and the key fields of `[signer]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub kind: SignerKind,
    pub key_file: PathBuf,
    pub allow_file_key_in_production: bool,
    pub pkcs11_module: PathBuf,
    pub pkcs11_token_label: String,
    pub pkcs11_pin_file: PathBuf,
    pub pkcs11_key_label: String,
    pub yubihsm_connector: String,
    pub yubihsm_auth_key_id: u16,
    pub yubihsm_password_file: PathBuf,
    pub yubihsm_key_id: u16,
}

/// An OP Stack chain's L1 (`node.rollup_config` set): the execution node
/// tephra follows for L1 origins and deposits.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct L1Config {
    /// The L1 execution node's JSON-RPC: http(s):// or ws(s)://.
    pub rpc: String,
    /// L1 blocks below the head before one is taken as an origin.
    pub confirmation_depth: u64,
    pub poll_interval_ms: u64,
    pub request_timeout_ms: u64,
    /// EIP-4844's blob base fee update fraction of the L1's fork (Prague's
    /// 5007716; Cancun's 3338477): the L1-info deposit's blob base fee.
    pub blob_base_fee_update_fraction: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub profile: Profile,
    pub data_dir: PathBuf,
    pub genesis: PathBuf,
    pub rollup_config: PathBuf,
    pub log_format: LogFormat,
    pub log_level: String,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    Development,
    Production,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockConfig {
    pub block_time_s: u64,
    pub beneficiary: String,
    pub extra_data: String,
    pub snapshot_interval_blocks: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    pub allow_unprotected: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecConfig {
    pub shards: usize,
    pub pin_shards: bool,
}

impl ExecConfig {
    /// The shards, worker k pinned to the k-th exec core of the placement.
    pub fn shard_config(&self, placement: &tephra_dataplane::topology::Placement) -> tephra_exec::ShardConfig {
        if self.pin_shards {
            // pinned_on places worker k on cores[k]; index 0 is shard 0's, the sequencer's.
            let cores: Vec<usize> =
                std::iter::once(placement.sequencer).chain(placement.exec.iter().copied()).collect();
            tephra_exec::ShardConfig::pinned_on(self.shards, &cores)
        } else {
            tephra_exec::ShardConfig::unpinned(self.shards)
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequencerConfig {
    pub submission_queue_depth: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub segment_size_max_bytes: u64,
    pub disk_free_min_bytes: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RpcConfig {
    pub listen: SocketAddr,
    /// The Flashblocks WebSocket stream's address; empty: off.
    pub flashblocks_listen: String,
    pub request_size_max_bytes: u32,
    pub response_size_max_bytes: u32,
    pub batch_size_max: u32,
    pub connections_max: u32,
    pub connections_per_client_max: u32,
    pub client_requests_per_s: u32,
    pub client_burst_requests: u32,
    pub clients_max: usize,
    pub get_logs_block_range_max: u64,
    pub get_logs_results_max: usize,
    pub send_raw_sync_timeout_ms_default: u64,
    pub send_raw_sync_timeout_ms_max: u64,
    pub history_blocks_max: usize,
    pub subscription_buffer_max: u32,
    pub filters_max: usize,
    pub filters_per_client_max: usize,
    pub filter_idle_timeout_s: u64,
    pub filter_changes_max: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdpConfig {
    pub listen: SocketAddr,
    pub inflight_datagrams_max: usize,
    pub preconf_timeout_ms: u64,
    pub source_txs_per_s: u32,
    pub source_burst_txs: u32,
    pub sources_max: usize,
}

/// `[host]`: what `tephra configure` sets up on the host.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    pub hugepages_2m: u32,
    pub hugetlbfs_mount: PathBuf,
    pub memlock_bytes_min: u64,
    pub nic_channels: u32,
    pub socket_buffer_bytes: u64,
    /// Transparent huge pages for the node's own memory (`tephra run`).
    pub transparent_huge_pages: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum SignerKind {
    File,
    Pkcs11,
    Yubihsm,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerConfig {
    pub kind: SignerKind,
    pub guard_file: PathBuf,
    pub audit_file: PathBuf,
    pub unsigned_blocks_max: usize,
    pub sign_timeout_ms: u64,
    pub sign_retry_ms: u64,
    pub delegation_epoch_blocks: u64,
    pub key_file: PathBuf,
    pub allow_file_key_in_production: bool,
    pub pkcs11_module: PathBuf,
    pub pkcs11_token_label: String,
    pub pkcs11_pin_file: PathBuf,
    pub pkcs11_key_label: String,
    pub yubihsm_connector: String,
    pub yubihsm_auth_key_id: u16,
    pub yubihsm_password_file: PathBuf,
    pub yubihsm_key_id: u16,
}

impl SignerConfig {
    /// The block key's place.
    pub fn key(&self) -> KeyConfig {
        KeyConfig {
            kind: self.kind.clone(),
            key_file: self.key_file.clone(),
            allow_file_key_in_production: self.allow_file_key_in_production,
            pkcs11_module: self.pkcs11_module.clone(),
            pkcs11_token_label: self.pkcs11_token_label.clone(),
            pkcs11_pin_file: self.pkcs11_pin_file.clone(),
            pkcs11_key_label: self.pkcs11_key_label.clone(),
            yubihsm_connector: self.yubihsm_connector.clone(),
            yubihsm_auth_key_id: self.yubihsm_auth_key_id,
            yubihsm_password_file: self.yubihsm_password_file.clone(),
            yubihsm_key_id: self.yubihsm_key_id,
        }
    }
}

/// `[ha]`: an active/standby pair (or more) coordinated by etcd.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaConfig {
    pub enabled: bool,
    pub node_id: String,
    pub peers: Vec<String>,
    pub etcd_endpoints: Vec<String>,
    pub etcd_prefix: String,
    pub etcd_ca_file: PathBuf,
    pub etcd_cert_file: PathBuf,
    pub etcd_key_file: PathBuf,
    pub etcd_request_timeout_ms: u64,
    pub lease_ttl_s: u64,
    pub replication: tephra_ha::ReplicationMode,
    pub replication_listen: SocketAddr,
    pub replication_advertise: String,
    pub rpc_advertise: String,
    pub peer_secret_file: PathBuf,
    pub sync_ack_timeout_ms: u64,
    pub campaign_lag_records_max: u64,
    pub replication_window_bytes_max: usize,
    pub replication_message_bytes_max: usize,
    pub standbys_max: usize,
    pub heartbeat_ms: u64,
    pub status_interval_ms: u64,
}

impl HaConfig {
    fn optional(path: &std::path::Path) -> Option<PathBuf> {
        (!path.as_os_str().is_empty()).then(|| path.to_path_buf())
    }

    pub fn etcd(&self) -> tephra_ha::EtcdConfig {
        tephra_ha::EtcdConfig {
            endpoints: self.etcd_endpoints.clone(),
            prefix: self.etcd_prefix.clone(),
            ca_file: Self::optional(&self.etcd_ca_file),
            cert_file: Self::optional(&self.etcd_cert_file),
            key_file: Self::optional(&self.etcd_key_file),
            lease_ttl_s: self.lease_ttl_s,
            request_timeout: std::time::Duration::from_millis(self.etcd_request_timeout_ms),
        }
    }

    fn validate(&self, extra_data: &str) -> Result<(), ConfigError> {
        let invalid =
            |key: &'static str, value: String, reason: &'static str| Err(ConfigError::Invalid { key, value, reason });
        if !self.enabled {
            return Ok(());
        }
        if self.node_id.is_empty() || self.node_id.len() > tephra_ha::channel::NODE_ID_BYTES_MAX {
            return invalid("ha.node_id", self.node_id.clone(), "must be 1 to 64 bytes");
        }
        if self.peers.is_empty() {
            return invalid("ha.peers", "[]".into(), "must name the nodes that may follow this one");
        }
        if self.etcd_endpoints.is_empty() {
            return invalid("ha.etcd_endpoints", "[]".into(), "must name at least one etcd member");
        }
        if extra_data.len() > 24 {
            return invalid("block.extra_data", extra_data.into(), "at most 24 bytes with ha: 8 carry the epoch");
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: {0}")]
    Parse(String),
    #[error("config: {key} = {value}: {reason}")]
    Invalid { key: &'static str, value: String, reason: &'static str },
    /// A numeric key outside its row of `Config::bounds`.
    #[error("config: {key} = {value} is outside {min}..={max}")]
    OutOfRange { key: &'static str, value: u64, min: u64, max: u64 },
    /// A `[net]` bound, which `NetConfig::check` owns; it names the key.
    #[error("config: {0}")]
    Net(#[from] tephra_dataplane::NetConfigError),
    #[error("config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
}

/// Keys of earlier versions whose meaning cannot carry over: named, with what
/// replaced them, rather than refused as unknown.
fn refuse_retired_keys(overrides: &toml::Table) -> Result<(), ConfigError> {
    let block_time_ms = overrides.get("block").and_then(|block| block.get("block_time_ms"));
    match block_time_ms {
        Some(value) => Err(ConfigError::Invalid {
            key: "block.block_time_ms",
            value: value.to_string(),
            reason: "is retired: headers carry whole seconds, each above its parent's; set block.block_time_s",
        }),
        None => Ok(()),
    }
}

impl Config {
    /// The defaults, overlaid with `overrides` (a TOML document that may set
    /// any subset of keys).
    pub fn from_toml(overrides: &str) -> Result<Self, ConfigError> {
        let mut merged: toml::Table =
            DEFAULT_TOML.parse().map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        let overrides: toml::Table =
            overrides.parse().map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        refuse_retired_keys(&overrides)?;
        merge(&mut merged, overrides);
        let config: Config =
            toml::Value::Table(merged).try_into().map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn load(path: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        match path {
            None => Self::from_toml(""),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
                Self::from_toml(&text)
            }
        }
    }

    /// Every numeric key and the range it must lie in, one row per key (a
    /// `[topology]` list by its highest core). The ceilings are
    /// `tephra_types::limits`, each with its reason. The floors are those the
    /// config always had, and 1 for `rpc.subscription_buffer_max`, whose 0
    /// panicked at start; 0 stays accepted where it was, as a setting ("off":
    /// `rpc.client_requests_per_s`, `net.source_datagrams_per_s`,
    /// `host.hugepages_2m`, `host.nic_channels`; "at once":
    /// `pool.mini_block_wait_ms`, `udp.preconf_timeout_ms`; "never refills",
    /// not "off": `udp.source_txs_per_s`) or as what it always did. Floors
    /// that hang on other keys or on the backend in use stay with their
    /// owners: `NetConfig::check` (packet buffers for the rings and bursts;
    /// the source table while the net tile's limit is on) and each NIC
    /// backend when it starts. `[ha]` rows apply only with `ha.enabled`, as
    /// the rest of `[ha]`.
    pub fn bounds(&self) -> [(&'static str, u64, RangeInclusive<u64>); 92] {
        let (rpc, udp, net, signer, ha) = (&self.rpc, &self.udp, &self.net, &self.signer, &self.ha);
        let batcher = &self.batcher;
        let highest_core = |cores: &[usize]| cores.iter().max().map_or(0, |&core| core as u64);
        [
            ("block.block_time_s", self.block.block_time_s, 1..=BLOCK_TIME_S_MAX),
            ("block.snapshot_interval_blocks", self.block.snapshot_interval_blocks, 1..=SNAPSHOT_INTERVAL_BLOCKS_MAX),
            ("pool.capacity", self.pool.capacity as u64, 1..=POOL_CAPACITY_MAX),
            ("pool.per_sender_max", self.pool.per_sender_max as u64, 1..=POOL_PER_SENDER_MAX),
            ("pool.nonce_gap_max", self.pool.nonce_gap_max, 0..=POOL_NONCE_GAP_MAX),
            ("pool.queued_lifetime_ms", self.pool.queued_lifetime_ms, 0..=POOL_QUEUED_LIFETIME_MS_MAX),
            ("pool.mini_block_txs_max", self.pool.mini_block_txs_max as u64, 1..=MINI_BLOCK_TXS_MAX),
            ("pool.mini_block_gas_max", self.pool.mini_block_gas_max, 1..=MINI_BLOCK_GAS_MAX),
            ("pool.mini_block_wait_ms", self.pool.mini_block_wait_ms, 0..=MINI_BLOCK_WAIT_MS_MAX),
            ("exec.shards", self.exec.shards as u64, 1..=EXEC_SHARDS_MAX),
            (
                "sequencer.submission_queue_depth",
                self.sequencer.submission_queue_depth as u64,
                1..=SUBMISSION_QUEUE_DEPTH_MAX,
            ),
            (
                "log.segment_size_max_bytes",
                self.log.segment_size_max_bytes,
                SEGMENT_SIZE_MIN_BYTES..=SEGMENT_SIZE_MAX_BYTES,
            ),
            ("log.disk_free_min_bytes", self.log.disk_free_min_bytes, 0..=DISK_FREE_RESERVE_MAX_BYTES),
            ("rpc.request_size_max_bytes", rpc.request_size_max_bytes.into(), 0..=RPC_REQUEST_SIZE_MAX_BYTES),
            ("rpc.response_size_max_bytes", rpc.response_size_max_bytes.into(), 0..=RPC_RESPONSE_SIZE_MAX_BYTES),
            ("rpc.batch_size_max", rpc.batch_size_max.into(), 0..=RPC_BATCH_SIZE_MAX),
            ("rpc.connections_max", rpc.connections_max.into(), 0..=RPC_CONNECTIONS_MAX),
            ("rpc.connections_per_client_max", rpc.connections_per_client_max.into(), 1..=RPC_CONNECTIONS_MAX),
            ("rpc.client_requests_per_s", rpc.client_requests_per_s.into(), 0..=RPC_CLIENT_REQUESTS_PER_S_MAX),
            ("rpc.client_burst_requests", rpc.client_burst_requests.into(), 1..=RPC_CLIENT_BURST_REQUESTS_MAX),
            ("rpc.clients_max", rpc.clients_max as u64, 1..=RPC_CLIENTS_MAX),
            ("rpc.get_logs_block_range_max", rpc.get_logs_block_range_max, 0..=GET_LOGS_BLOCK_RANGE_MAX),
            ("rpc.get_logs_results_max", rpc.get_logs_results_max as u64, 0..=GET_LOGS_RESULTS_MAX),
            (
                "rpc.send_raw_sync_timeout_ms_default",
                rpc.send_raw_sync_timeout_ms_default,
                0..=SEND_RAW_SYNC_TIMEOUT_MS_MAX,
            ),
            ("rpc.send_raw_sync_timeout_ms_max", rpc.send_raw_sync_timeout_ms_max, 0..=SEND_RAW_SYNC_TIMEOUT_MS_MAX),
            ("rpc.history_blocks_max", rpc.history_blocks_max as u64, 1..=HISTORY_BLOCKS_MAX),
            ("history.cache_bytes", self.history.cache_bytes as u64, HISTORY_CACHE_BYTES_MIN..=HISTORY_CACHE_BYTES_MAX),
            // A channel of no slots panics when the node starts.
            ("rpc.subscription_buffer_max", rpc.subscription_buffer_max.into(), 1..=SUBSCRIPTION_BUFFER_MAX),
            ("rpc.filters_max", rpc.filters_max as u64, 0..=RPC_FILTERS_MAX),
            ("rpc.filters_per_client_max", rpc.filters_per_client_max as u64, 0..=RPC_FILTERS_MAX),
            ("rpc.filter_idle_timeout_s", rpc.filter_idle_timeout_s, 1..=RPC_FILTER_IDLE_TIMEOUT_S_MAX),
            ("rpc.filter_changes_max", rpc.filter_changes_max as u64, 1..=RPC_FILTER_CHANGES_MAX),
            ("udp.inflight_datagrams_max", udp.inflight_datagrams_max as u64, 1..=UDP_INFLIGHT_DATAGRAMS_MAX),
            ("udp.preconf_timeout_ms", udp.preconf_timeout_ms, 0..=UDP_PRECONF_TIMEOUT_MS_MAX),
            ("udp.source_txs_per_s", udp.source_txs_per_s.into(), 0..=UDP_SOURCE_TXS_PER_S_MAX),
            ("udp.source_burst_txs", udp.source_burst_txs.into(), 1..=UDP_SOURCE_BURST_TXS_MAX),
            ("udp.sources_max", udp.sources_max as u64, 1..=UDP_SOURCES_MAX),
            ("net.packet_buffers", net.packet_buffers as u64, 1..=NET_PACKET_BUFFERS_MAX),
            ("net.ingress_ring_depth", net.ingress_ring_depth as u64, 1..=NET_RING_DEPTH_MAX),
            ("net.egress_ring_depth", net.egress_ring_depth as u64, 1..=NET_RING_DEPTH_MAX),
            ("net.burst", net.burst as u64, 1..=NET_BURST_MAX),
            ("net.idle_sleep_us", net.idle_sleep_us, 0..=NET_IDLE_SLEEP_US_MAX),
            ("net.socket_rx_slots", net.socket_rx_slots as u64, 1..=NET_SOCKET_SLOTS_MAX),
            ("net.socket_tx_slots", net.socket_tx_slots as u64, 1..=NET_SOCKET_SLOTS_MAX),
            ("net.source_datagrams_per_s", net.source_datagrams_per_s.into(), 0..=NET_SOURCE_DATAGRAMS_PER_S_MAX),
            ("net.source_burst_datagrams", net.source_burst_datagrams.into(), 0..=NET_SOURCE_BURST_DATAGRAMS_MAX),
            ("net.sources_max", net.sources_max as u64, 0..=NET_SOURCES_MAX),
            ("net.af_xdp.queue", net.af_xdp.queue.into(), 0..=NIC_QUEUES_MAX - 1),
            ("net.af_xdp.frames", net.af_xdp.frames.into(), 0..=AF_XDP_FRAMES_MAX),
            ("net.dpdk.port_id", net.dpdk.port_id.into(), 0..=DPDK_PORT_ID_MAX),
            ("net.dpdk.rx_queue_depth", net.dpdk.rx_queue_depth.into(), 0..=DPDK_QUEUE_DEPTH_MAX),
            ("net.dpdk.tx_queue_depth", net.dpdk.tx_queue_depth.into(), 0..=DPDK_QUEUE_DEPTH_MAX),
            ("net.dpdk.mbufs", net.dpdk.mbufs.into(), 0..=DPDK_MBUFS_MAX),
            ("net.dpdk.burst_size", net.dpdk.burst_size.into(), 0..=DPDK_BURST_SIZE_MAX),
            ("net.dpdk.mbuf_data_room", net.dpdk.mbuf_data_room.into(), 0..=DPDK_MBUF_DATA_ROOM_MAX_BYTES),
            ("topology.net", highest_core(&self.topology.net), 0..=CPU_INDEX_MAX),
            ("topology.sequencer", highest_core(&self.topology.sequencer), 0..=CPU_INDEX_MAX),
            ("topology.exec", highest_core(&self.topology.exec), 0..=CPU_INDEX_MAX),
            ("topology.verify", highest_core(&self.topology.verify), 0..=CPU_INDEX_MAX),
            ("topology.rpc", highest_core(&self.topology.rpc), 0..=CPU_INDEX_MAX),
            ("host.hugepages_2m", self.host.hugepages_2m.into(), 0..=HOST_HUGEPAGES_2M_MAX),
            ("host.memlock_bytes_min", self.host.memlock_bytes_min, 0..=HOST_MEMLOCK_MAX_BYTES),
            ("host.nic_channels", self.host.nic_channels.into(), 0..=NIC_QUEUES_MAX),
            ("host.socket_buffer_bytes", self.host.socket_buffer_bytes, 0..=HOST_SOCKET_BUFFER_MAX_BYTES),
            ("signer.unsigned_blocks_max", signer.unsigned_blocks_max as u64, 1..=SIGNER_UNSIGNED_BLOCKS_MAX),
            ("signer.sign_timeout_ms", signer.sign_timeout_ms, 1..=SIGN_TIMEOUT_MS_MAX),
            ("signer.sign_retry_ms", signer.sign_retry_ms, 0..=SIGN_RETRY_MS_MAX),
            ("signer.delegation_epoch_blocks", signer.delegation_epoch_blocks, 1..=DELEGATION_EPOCH_BLOCKS_MAX),
            ("ha.etcd_request_timeout_ms", ha.etcd_request_timeout_ms, 1..=HA_ETCD_REQUEST_TIMEOUT_MS_MAX),
            ("ha.lease_ttl_s", ha.lease_ttl_s, HA_LEASE_TTL_S_MIN..=HA_LEASE_TTL_S_MAX),
            ("ha.sync_ack_timeout_ms", ha.sync_ack_timeout_ms, 1..=HA_SYNC_ACK_TIMEOUT_MS_MAX),
            ("ha.campaign_lag_records_max", ha.campaign_lag_records_max, 0..=HA_CAMPAIGN_LAG_RECORDS_MAX),
            (
                "ha.replication_window_bytes_max",
                ha.replication_window_bytes_max as u64,
                1..=HA_REPLICATION_WINDOW_MAX_BYTES,
            ),
            (
                "ha.replication_message_bytes_max",
                ha.replication_message_bytes_max as u64,
                1..=HA_REPLICATION_MESSAGE_MAX_BYTES,
            ),
            ("ha.standbys_max", ha.standbys_max as u64, 1..=HA_STANDBYS_MAX),
            ("ha.heartbeat_ms", ha.heartbeat_ms, 1..=HA_HEARTBEAT_MS_MAX),
            ("ha.status_interval_ms", ha.status_interval_ms, 1..=HA_STATUS_INTERVAL_MS_MAX),
            ("l1.confirmation_depth", self.l1.confirmation_depth, 0..=L1_CONFIRMATION_DEPTH_MAX),
            ("l1.poll_interval_ms", self.l1.poll_interval_ms, 1..=L1_POLL_INTERVAL_MS_MAX),
            ("l1.request_timeout_ms", self.l1.request_timeout_ms, 1..=L1_REQUEST_TIMEOUT_MS_MAX),
            (
                "l1.blob_base_fee_update_fraction",
                self.l1.blob_base_fee_update_fraction,
                1..=L1_BLOB_BASE_FEE_UPDATE_FRACTION_MAX,
            ),
            ("batcher.safe_depth_l1_blocks", batcher.safe_depth_l1_blocks, 0..=L1_CONFIRMATION_DEPTH_MAX),
            ("batcher.poll_interval_ms", batcher.poll_interval_ms, 1..=BATCHER_POLL_INTERVAL_MS_MAX),
            (
                "batcher.frame_size_max_bytes",
                batcher.frame_size_max_bytes as u64,
                BATCHER_FRAME_SIZE_MIN_BYTES..=BATCHER_FRAME_SIZE_MAX_BYTES,
            ),
            (
                "batcher.channel_target_frames",
                batcher.channel_target_frames as u64,
                1..=BATCHER_CHANNEL_TARGET_FRAMES_MAX,
            ),
            ("batcher.compression_quality", u64::from(batcher.compression_quality), 0..=11),
            (
                "batcher.channel_duration_max_l1_blocks",
                batcher.channel_duration_max_l1_blocks,
                0..=BATCHER_CHANNEL_DURATION_MAX_L1_BLOCKS,
            ),
            (
                "batcher.sub_safety_margin_l1_blocks",
                batcher.sub_safety_margin_l1_blocks,
                0..=BATCHER_SUB_SAFETY_MARGIN_MAX_L1_BLOCKS,
            ),
            ("batcher.txs_in_flight_max", batcher.txs_in_flight_max as u64, 1..=BATCHER_TXS_IN_FLIGHT_MAX),
            ("batcher.resubmit_timeout_ms", batcher.resubmit_timeout_ms, 1..=BATCHER_RESUBMIT_TIMEOUT_MS_MAX),
            ("batcher.max_fee_per_gas_cap_gwei", batcher.max_fee_per_gas_cap_gwei, 1..=BATCHER_FEE_CAP_GWEI_MAX),
            (
                "batcher.read_back_l1_blocks_per_poll_max",
                batcher.read_back_l1_blocks_per_poll_max,
                1..=BATCHER_READ_BACK_BLOCKS_PER_POLL_MAX,
            ),
        ]
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (key, value, range) in self.bounds() {
            if key.starts_with("ha.") && !self.ha.enabled {
                continue;
            }
            if !range.contains(&value) {
                return Err(ConfigError::OutOfRange { key, value, min: *range.start(), max: *range.end() });
            }
        }
        if !self.rpc.flashblocks_listen.is_empty() && self.rpc.flashblocks_listen.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::Invalid {
                key: "rpc.flashblocks_listen",
                value: self.rpc.flashblocks_listen.clone(),
                reason: "must be an address:port, or empty for no Flashblocks stream",
            });
        }
        if !self.l1.rpc.is_empty() && tephra_l1::L1JsonRpc::new(self.l1.rpc.clone()).is_err() {
            return Err(ConfigError::Invalid {
                key: "l1.rpc",
                value: self.l1.rpc.clone(),
                reason: "must be an http://, https://, ws:// or wss:// URL, or empty for no L1",
            });
        }
        if !self.udp.listen.is_ipv4() {
            return Err(ConfigError::Invalid {
                key: "udp.listen",
                value: self.udp.listen.to_string(),
                reason: "the UDP wire format runs over IPv4",
            });
        }
        self.net.check()?;
        self.ha.validate(&self.block.extra_data)?;
        if self.node.profile == Profile::Production
            && matches!(self.signer.kind, SignerKind::File)
            && !self.signer.allow_file_key_in_production
        {
            return Err(ConfigError::Invalid {
                key: "signer.kind",
                value: "file".into(),
                reason: "a production node keeps its block key in an HSM (set signer.allow_file_key_in_production to override)",
            });
        }
        if self.node.profile == Profile::Production
            && self.batcher.enabled
            && matches!(self.batcher.key.kind, SignerKind::File)
            && !self.batcher.key.allow_file_key_in_production
        {
            return Err(ConfigError::Invalid {
                key: "batcher.key.kind",
                value: "file".into(),
                reason: "a production node keeps its batcher key in an HSM (set batcher.key.allow_file_key_in_production to override)",
            });
        }
        if self.batcher.enabled
            && self.batcher.key.kind == self.signer.kind
            && self.batcher.key.kind != SignerKind::File
        {
            let same = match self.batcher.key.kind {
                SignerKind::Pkcs11 => {
                    self.batcher.key.pkcs11_token_label == self.signer.pkcs11_token_label
                        && self.batcher.key.pkcs11_key_label == self.signer.pkcs11_key_label
                }
                SignerKind::Yubihsm => self.batcher.key.yubihsm_key_id == self.signer.yubihsm_key_id,
                SignerKind::File => false,
            };
            if same {
                return Err(ConfigError::Invalid {
                    key: "batcher.key",
                    value: "the block key".into(),
                    reason: "the batcher key pays for L1 transactions: it must not be the block key",
                });
            }
        }
        let blob_frame_max = tephra_batcher::BLOB_DATA_MAX_BYTES - 1;
        if self.batcher.data_availability == DataAvailability::Blobs
            && self.batcher.frame_size_max_bytes > blob_frame_max
        {
            return Err(ConfigError::Invalid {
                key: "batcher.frame_size_max_bytes",
                value: self.batcher.frame_size_max_bytes.to_string(),
                reason: "with blobs, a frame and the version byte fill one blob: at most 130043",
            });
        }
        if self.batcher.enabled && self.batcher.key.key_file == self.signer.key_file {
            return Err(ConfigError::Invalid {
                key: "batcher.key.key_file",
                value: self.batcher.key.key_file.display().to_string(),
                reason: "the batcher key must not be the block key's file",
            });
        }
        self.validate_interop()?;
        if self.block.extra_data.len() > tephra_types::limits::EXTRA_DATA_MAX_BYTES {
            return Err(ConfigError::Invalid {
                key: "block.extra_data",
                value: self.block.extra_data.clone(),
                reason: "at most 32 bytes",
            });
        }
        if !self.block.beneficiary.is_empty() && self.block.beneficiary.parse::<alloy_primitives::Address>().is_err() {
            return Err(ConfigError::Invalid {
                key: "block.beneficiary",
                value: self.block.beneficiary.clone(),
                reason: "not a 20-byte hex address",
            });
        }
        if self.rpc.send_raw_sync_timeout_ms_default > self.rpc.send_raw_sync_timeout_ms_max {
            return Err(ConfigError::Invalid {
                key: "rpc.send_raw_sync_timeout_ms_default",
                value: self.rpc.send_raw_sync_timeout_ms_default.to_string(),
                reason: "above rpc.send_raw_sync_timeout_ms_max",
            });
        }
        Ok(())
    }
}

// The ceilings that other crates hold too: one number, asserted equal.
const _: () = {
    assert!(EXEC_SHARDS_MAX == tephra_exec::parallel::SHARDS_MAX as u64);
    assert!(NET_PACKET_BUFFERS_MAX == tephra_dataplane::PACKET_BUFFERS_MAX as u64);
    assert!(NET_RING_DEPTH_MAX == tephra_dataplane::RING_DEPTH_MAX as u64);
    assert!(NET_BURST_MAX == tephra_dataplane::net::NET_BURST_MAX as u64);
    assert!(NET_SOCKET_SLOTS_MAX == tephra_dataplane::backend::socket::SOCKET_SLOTS_MAX as u64);
    assert!(NET_SOURCES_MAX == tephra_dataplane::SOURCES_MAX as u64);
};
#[cfg(feature = "dpdk")]
const _: () = assert!(DPDK_BURST_SIZE_MAX == tephra_dataplane::backend::dpdk::BURST_SIZE_MAX as u64);

// The largest mini-block is one Batch record, which the batch log must take.
const _: () = assert!(
    tephra_batchlog::batch_record_bytes_max(MINI_BLOCK_TXS_MAX, TX_SIZE_MAX_BYTES as u64)
        <= tephra_batchlog::RECORD_SIZE_MAX_BYTES as u64
);

/// Whether a chain of `block_gas_limit` can seal every block it allows: a
/// sealed block's record (its header and every receipt with its logs) must
/// fit the batch log's record limit, or sealing a full block of logs would
/// fail its write and stop the node.
pub fn check_record_limits(block_gas_limit: u64) -> Result<(), crate::node::NodeError> {
    let record_bytes_max = tephra_batchlog::sealed_record_bytes_max(block_gas_limit);
    if record_bytes_max > tephra_batchlog::RECORD_SIZE_MAX_BYTES as u64 {
        return Err(crate::node::NodeError::SealedRecordTooLarge {
            block_gas_limit,
            record_bytes_max,
            record_size_max_bytes: tephra_batchlog::RECORD_SIZE_MAX_BYTES,
        });
    }
    Ok(())
}

/// Overlays `overrides` onto `base`, table by table.
fn merge(base: &mut toml::Table, overrides: toml::Table) {
    for (key, value) in overrides {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(override_table)) => {
                merge(base_table, override_table)
            }
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
    fn the_embedded_defaults_parse() {
        let config = Config::from_toml("").unwrap();
        assert_eq!(config.block.block_time_s, 1);
        assert_eq!(config.rpc.listen.to_string(), "127.0.0.1:8545");
    }

    #[test]
    fn overrides_apply_key_by_key() {
        let config = Config::from_toml("[block]\nblock_time_s = 2\n").unwrap();
        assert_eq!(config.block.block_time_s, 2);
        assert_eq!(config.block.extra_data, "tephra");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let unknown = Config::from_toml("[block]\nblock_tme_ms = 5\n").unwrap_err().to_string();
        assert!(unknown.contains("block_tme_ms"), "{unknown}");
        let bad_type = Config::from_toml("[rpc]\nlisten = \"nowhere\"\n").unwrap_err().to_string();
        assert!(bad_type.contains("listen"), "{bad_type}");
        let zero = Config::from_toml("[block]\nblock_time_s = 0\n").unwrap_err().to_string();
        assert!(zero.contains("block.block_time_s"), "{zero}");
        let retired = Config::from_toml("[block]\nblock_time_ms = 250\n").unwrap_err().to_string();
        assert!(retired.contains("block.block_time_ms") && retired.contains("block.block_time_s"), "{retired}");
        for shards in [0, 65] {
            let refused = Config::from_toml(&format!("[exec]\nshards = {shards}\n")).unwrap_err().to_string();
            assert!(refused.contains("exec.shards"), "{refused}");
        }
        assert_eq!(Config::from_toml("[exec]\nshards = 4\n").unwrap().exec.shards, 4);
        let section = Config::from_toml("[nonsense]\nx = 1\n").unwrap_err().to_string();
        assert!(section.contains("nonsense"), "{section}");
    }

    /// The value at a dotted key of a TOML table.
    fn lookup<'a>(table: &'a toml::Table, dotted: &str) -> Option<&'a toml::Value> {
        let (sections, key) = dotted.rsplit_once('.').expect("a key in a section");
        let mut table = table;
        for section in sections.split('.') {
            table = table.get(section)?.as_table()?;
        }
        table.get(key)
    }

    /// Overrides of the defaults that enable `[ha]` (whose rows apply only
    /// then) and set `dotted` to `value`, a list of it if the key is a list.
    fn with(dotted: &str, value: u64) -> String {
        let defaults: toml::Table = DEFAULT_TOML.parse().unwrap();
        let value = toml::Value::Integer(i64::try_from(value).unwrap());
        let value = match lookup(&defaults, dotted) {
            Some(toml::Value::Array(_)) => toml::Value::Array(vec![value]),
            _ => value,
        };
        let mut overrides: toml::Table = "[ha]\nenabled = true\n".parse().unwrap();
        let (sections, key) = dotted.rsplit_once('.').unwrap();
        let mut table = &mut overrides;
        for section in sections.split('.') {
            table = table.entry(section).or_insert_with(|| toml::Table::new().into()).as_table_mut().unwrap();
        }
        table.insert(key.into(), value);
        toml::to_string(&overrides).unwrap()
    }

    #[test]
    fn every_bounded_key_is_a_number_in_the_defaults() {
        let defaults: toml::Table = DEFAULT_TOML.parse().unwrap();
        let config = Config::from_toml("").unwrap();
        let mut keys = std::collections::BTreeSet::new();
        for (key, _, range) in config.bounds() {
            assert!(keys.insert(key), "{key} has two rows");
            match lookup(&defaults, key) {
                Some(toml::Value::Integer(_)) => {}
                Some(toml::Value::Array(cores)) => assert!(cores.iter().all(toml::Value::is_integer), "{key}"),
                other => panic!("{key} is not a number in config/default.toml: {other:?}"),
            }
            assert!(range.start() <= range.end(), "{key}");
        }
    }

    #[test]
    fn the_defaults_are_within_every_bound() {
        for overrides in ["", "[ha]\nenabled = true\n"] {
            let config = Config::from_toml(overrides).unwrap();
            for (key, value, range) in config.bounds() {
                assert!(range.contains(&value), "{key} = {value} is outside {range:?}");
            }
        }
    }

    #[test]
    fn every_bound_refuses_past_its_ceiling_and_below_its_floor_naming_its_key() {
        let config = Config::from_toml("").unwrap();
        for (key, _, range) in config.bounds() {
            let mut outside = vec![range.end() + 1];
            if *range.start() > 0 {
                outside.push(range.start() - 1);
            }
            for value in outside {
                match Config::from_toml(&with(key, value)) {
                    Err(ConfigError::OutOfRange { key: refused, value: told, min, max }) => {
                        assert_eq!((refused, told, min..=max), (key, value, range.clone()));
                    }
                    other => panic!("{key} = {value}: {other:?}"),
                }
            }
        }
        let refused = Config::from_toml("[pool]\nmini_block_txs_max = 501\n").unwrap_err().to_string();
        assert_eq!(refused, "config: pool.mini_block_txs_max = 501 is outside 1..=500");
    }

    /// `[ha]` is read only when enabled, so its keys are checked only then,
    /// as they always were.
    #[test]
    fn ha_rows_apply_only_with_ha() {
        Config::from_toml("[ha]\nheartbeat_ms = 0\nlease_ttl_s = 1000\n").unwrap();
        let refused = Config::from_toml("[ha]\nenabled = true\nlease_ttl_s = 1\n").unwrap_err().to_string();
        assert!(refused.contains("ha.lease_ttl_s = 1 is outside 2..=60"), "{refused}");
    }

    /// `udp.source_txs_per_s = 0` stays what it was: a bucket that never
    /// refills (node/README.md), accepted as before.
    #[test]
    fn a_zero_rate_is_accepted_where_it_was() {
        let config = Config::from_toml(
            "[udp]\nsource_txs_per_s = 0\n[rpc]\nclient_requests_per_s = 0\n[net]\nsource_datagrams_per_s = 0\n",
        )
        .unwrap();
        assert_eq!(config.udp.source_txs_per_s, 0);
    }

    #[test]
    fn a_sealed_block_record_fits_at_30m_gas_but_not_at_2_to_the_40() {
        check_record_limits(30_000_000).unwrap();
        match check_record_limits(1 << 40) {
            Err(crate::node::NodeError::SealedRecordTooLarge {
                block_gas_limit,
                record_bytes_max,
                record_size_max_bytes,
            }) => {
                assert_eq!(block_gas_limit, 1 << 40);
                assert_eq!(record_size_max_bytes, tephra_batchlog::RECORD_SIZE_MAX_BYTES);
                assert!(record_bytes_max > record_size_max_bytes as u64);
            }
            other => panic!("{other:?}"),
        }
        // The embedded dev chain's 10^9 gas fits: it starts.
        let dev_gas_limit = tephra_exec::ChainSpec::dev().genesis_header().gas_limit;
        check_record_limits(dev_gas_limit).unwrap();
    }

    /// A Sealed record's header is within `HEADER_RLP_MAX_BYTES`: every
    /// field of the newest header at its widest.
    #[test]
    fn the_widest_header_is_within_its_bound() {
        use alloy_primitives::{B64, B256, Bloom, U256};
        let hash = Some(B256::repeat_byte(0xff));
        let header = alloy_consensus::Header {
            parent_hash: B256::repeat_byte(0xff),
            ommers_hash: B256::repeat_byte(0xff),
            beneficiary: alloy_primitives::Address::repeat_byte(0xff),
            state_root: B256::repeat_byte(0xff),
            transactions_root: B256::repeat_byte(0xff),
            receipts_root: B256::repeat_byte(0xff),
            logs_bloom: Bloom::repeat_byte(0xff),
            difficulty: U256::MAX,
            number: u64::MAX,
            gas_limit: u64::MAX,
            gas_used: u64::MAX,
            timestamp: u64::MAX,
            extra_data: vec![0xff; tephra_types::limits::EXTRA_DATA_MAX_BYTES].into(),
            mix_hash: B256::repeat_byte(0xff),
            nonce: B64::repeat_byte(0xff),
            base_fee_per_gas: Some(u64::MAX),
            withdrawals_root: hash,
            blob_gas_used: Some(u64::MAX),
            excess_blob_gas: Some(u64::MAX),
            parent_beacon_block_root: hash,
            requests_hash: hash,
            block_access_list_hash: hash,
            slot_number: Some(u64::MAX),
        };
        let bytes = alloy_rlp::encode(&header).len() as u64;
        assert_eq!(bytes, 760, "the bound's comment names it");
        assert!(bytes <= tephra_batchlog::HEADER_RLP_MAX_BYTES);
    }

    #[test]
    fn production_refuses_a_file_key_unless_allowed() {
        let refused = Config::from_toml("[node]\nprofile = \"production\"\n").unwrap_err().to_string();
        assert!(refused.contains("signer.kind") && refused.contains("HSM"), "{refused}");
        Config::from_toml("[node]\nprofile = \"production\"\n[signer]\nallow_file_key_in_production = true\n").unwrap();
        Config::from_toml("[node]\nprofile = \"production\"\n[signer]\nkind = \"pkcs11\"\n").unwrap();
    }

    #[test]
    fn a_validator_needs_its_contracts_and_a_key_of_its_own() {
        let contracts = "domain = 901\nmailbox = \"0x00000000000000000000000000000000000000aa\"\n\
                         merkle_tree_hook = \"0x00000000000000000000000000000000000000bb\"\n";
        let refused = |toml: &str| Config::from_toml(toml).unwrap_err().to_string();
        let no_domain = refused("[interop]\nvalidator = true\n");
        assert!(no_domain.contains("interop.domain"), "{no_domain}");
        let no_mailbox = refused("[interop]\nvalidator = true\ndomain = 901\n");
        assert!(no_mailbox.contains("interop.mailbox"), "{no_mailbox}");
        let block_key =
            refused(&format!("[interop]\nvalidator = true\n{contracts}[interop.key]\nkey_file = \"block.key\"\n"));
        assert!(block_key.contains("interop.key.key_file"), "{block_key}");
        let production = refused(&format!(
            "[node]\nprofile = \"production\"\n[signer]\nkind = \"pkcs11\"\n[interop]\nvalidator = true\n{contracts}"
        ));
        assert!(production.contains("interop.key.kind"), "{production}");
        Config::from_toml(&format!("[interop]\nvalidator = true\n{contracts}")).unwrap();
        // Off, nothing of it is asked for.
        Config::from_toml("[interop]\nvalidator = false\n").unwrap();
    }
}
