//! One TOML file, every key in config/default.toml. Each part of the node gets
//! its own slice. Unknown keys are refused; a bad value names its key.

use std::{net::SocketAddr, path::PathBuf};

use serde::Deserialize;
use tephra_exec::pool::PoolLimits;

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
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub profile: Profile,
    pub data_dir: PathBuf,
    pub genesis: PathBuf,
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
    pub block_time_ms: u64,
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
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
}

#[derive(Clone, Debug, Deserialize)]
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
        if self.lease_ttl_s < 2 {
            return invalid("ha.lease_ttl_s", self.lease_ttl_s.to_string(), "must be at least 2 (etcd's minimum)");
        }
        if extra_data.len() > 24 {
            return invalid("block.extra_data", extra_data.into(), "at most 24 bytes with ha: 8 carry the epoch");
        }
        for (key, value) in [
            ("ha.etcd_request_timeout_ms", self.etcd_request_timeout_ms),
            ("ha.sync_ack_timeout_ms", self.sync_ack_timeout_ms),
            ("ha.replication_window_bytes_max", self.replication_window_bytes_max as u64),
            ("ha.replication_message_bytes_max", self.replication_message_bytes_max as u64),
            ("ha.standbys_max", self.standbys_max as u64),
            ("ha.heartbeat_ms", self.heartbeat_ms),
            ("ha.status_interval_ms", self.status_interval_ms),
        ] {
            if value == 0 {
                return invalid(key, "0".into(), "must be at least 1");
            }
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
    /// A bound checked by the part that owns the slice; the text names the key.
    #[error("config: {0}")]
    OutOfBounds(String),
    #[error("config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
}

impl Config {
    /// The defaults, overlaid with `overrides` (a TOML document that may set
    /// any subset of keys).
    pub fn from_toml(overrides: &str) -> Result<Self, ConfigError> {
        let mut merged: toml::Table =
            DEFAULT_TOML.parse().map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        let overrides: toml::Table =
            overrides.parse().map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
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

    fn validate(&self) -> Result<(), ConfigError> {
        let positive = |key: &'static str, value: u64| {
            if value == 0 {
                return Err(ConfigError::Invalid { key, value: value.to_string(), reason: "must be at least 1" });
            }
            Ok(())
        };
        positive("block.block_time_ms", self.block.block_time_ms)?;
        positive("block.snapshot_interval_blocks", self.block.snapshot_interval_blocks)?;
        positive("pool.capacity", self.pool.capacity as u64)?;
        positive("pool.per_sender_max", self.pool.per_sender_max as u64)?;
        positive("pool.mini_block_txs_max", self.pool.mini_block_txs_max as u64)?;
        positive("pool.mini_block_gas_max", self.pool.mini_block_gas_max)?;
        const _: () = assert!(tephra_exec::parallel::SHARDS_MAX == 64, "the message below names it");
        if !(1..=tephra_exec::parallel::SHARDS_MAX).contains(&self.exec.shards) {
            return Err(ConfigError::Invalid {
                key: "exec.shards",
                value: self.exec.shards.to_string(),
                reason: "must be between 1 and 64",
            });
        }
        positive("sequencer.submission_queue_depth", self.sequencer.submission_queue_depth as u64)?;
        positive("rpc.history_blocks_max", self.rpc.history_blocks_max as u64)?;
        positive("rpc.connections_per_client_max", u64::from(self.rpc.connections_per_client_max))?;
        positive("rpc.client_burst_requests", u64::from(self.rpc.client_burst_requests))?;
        positive("rpc.clients_max", self.rpc.clients_max as u64)?;
        positive("udp.inflight_datagrams_max", self.udp.inflight_datagrams_max as u64)?;
        positive("udp.source_burst_txs", u64::from(self.udp.source_burst_txs))?;
        positive("udp.sources_max", self.udp.sources_max as u64)?;
        if !self.udp.listen.is_ipv4() {
            return Err(ConfigError::Invalid {
                key: "udp.listen",
                value: self.udp.listen.to_string(),
                reason: "the UDP wire format runs over IPv4",
            });
        }
        self.net.check().map_err(ConfigError::OutOfBounds)?;
        positive("signer.unsigned_blocks_max", self.signer.unsigned_blocks_max as u64)?;
        positive("signer.sign_timeout_ms", self.signer.sign_timeout_ms)?;
        positive("signer.delegation_epoch_blocks", self.signer.delegation_epoch_blocks)?;
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
        if self.log.segment_size_max_bytes < 1 << 20 {
            return Err(ConfigError::Invalid {
                key: "log.segment_size_max_bytes",
                value: self.log.segment_size_max_bytes.to_string(),
                reason: "must be at least 1 MiB",
            });
        }
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
        assert_eq!(config.block.block_time_ms, 250);
        assert_eq!(config.rpc.listen.to_string(), "127.0.0.1:8545");
    }

    #[test]
    fn overrides_apply_key_by_key() {
        let config = Config::from_toml("[block]\nblock_time_ms = 50\n").unwrap();
        assert_eq!(config.block.block_time_ms, 50);
        assert_eq!(config.block.extra_data, "tephra");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let unknown = Config::from_toml("[block]\nblock_tme_ms = 5\n").unwrap_err().to_string();
        assert!(unknown.contains("block_tme_ms"), "{unknown}");
        let bad_type = Config::from_toml("[rpc]\nlisten = \"nowhere\"\n").unwrap_err().to_string();
        assert!(bad_type.contains("listen"), "{bad_type}");
        let zero = Config::from_toml("[block]\nblock_time_ms = 0\n").unwrap_err().to_string();
        assert!(zero.contains("block.block_time_ms"), "{zero}");
        for shards in [0, 65] {
            let refused = Config::from_toml(&format!("[exec]\nshards = {shards}\n")).unwrap_err().to_string();
            assert!(refused.contains("exec.shards"), "{refused}");
        }
        assert_eq!(Config::from_toml("[exec]\nshards = 4\n").unwrap().exec.shards, 4);
        let section = Config::from_toml("[nonsense]\nx = 1\n").unwrap_err().to_string();
        assert!(section.contains("nonsense"), "{section}");
    }

    #[test]
    fn production_refuses_a_file_key_unless_allowed() {
        let refused = Config::from_toml("[node]\nprofile = \"production\"\n").unwrap_err().to_string();
        assert!(refused.contains("signer.kind") && refused.contains("HSM"), "{refused}");
        Config::from_toml("[node]\nprofile = \"production\"\n[signer]\nallow_file_key_in_production = true\n").unwrap();
        Config::from_toml("[node]\nprofile = \"production\"\n[signer]\nkind = \"pkcs11\"\n").unwrap();
    }
}
