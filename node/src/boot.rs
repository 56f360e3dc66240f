//! Boot: the data directory and its lock, the chain it holds, the block
//! key, and the batch log read back and replayed into the view a node
//! starts from (and `tephra log verify`'s full replay).

use std::{
    fs,
    path::{Path, PathBuf},
    sync::Arc,
};

use tephra_batchlog::Record;
use tephra_dataplane::topology::{Machine, Placement, TopologyError};
use tephra_exec::{ChainSpec, snapshot};
use tephra_hsm::{
    AuditedSigner, FileSigner, GuardedSigner, Pkcs11Config, Pkcs11Signer, SignError, SignGuard, Signer, YubiConnector,
    YubiHsmConfig, YubiHsmSigner,
};
use tephra_types::rollup::RollupConfig;

use crate::{
    config::{Config, KeyConfig, SignerKind},
    error::{NodeError, io_error},
    replay,
};

/// Holds the data dir for this process: two nodes (or a node and `log
/// verify`) on one batch log and one signing guard could fork the chain.
pub fn lock_data_dir(data: &DataDir) -> Result<fs::File, NodeError> {
    fs::create_dir_all(&data.0).map_err(io_error(&data.0))?;
    let path = data.0.join("LOCK");
    let file = fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io_error(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(NodeError::Locked(data.0.clone())),
        Err(fs::TryLockError::Error(error)) => Err(NodeError::Io { path, source: error }),
    }
}

/// The data directory's files.
#[derive(Clone, Debug)]
pub struct DataDir(pub PathBuf);

impl DataDir {
    pub fn genesis(&self) -> PathBuf {
        self.0.join("genesis.json")
    }
    pub fn rollup_config(&self) -> PathBuf {
        self.0.join("rollup.json")
    }
    pub fn log(&self) -> PathBuf {
        self.0.join("log")
    }
    pub fn snapshot(&self) -> PathBuf {
        self.0.join("snapshot.bin")
    }
    /// The state history's store (`history.rs`).
    pub fn history(&self) -> PathBuf {
        self.0.join("history.redb")
    }
    /// The polling filters' journal (`filters.rs`).
    pub fn filters(&self) -> PathBuf {
        self.0.join("filters.jsonl")
    }
}

/// The chain of a data dir: its genesis.json, written on first use from the
/// configured genesis (or the embedded dev one). A different genesis over an
/// existing data dir is refused.
pub fn chain_of(config: &Config, data: &DataDir) -> Result<ChainSpec, NodeError> {
    fs::create_dir_all(&data.0).map_err(io_error(&data.0))?;
    let configured = if config.node.genesis.as_os_str().is_empty() {
        None
    } else {
        Some(fs::read_to_string(&config.node.genesis).map_err(io_error(&config.node.genesis))?)
    };
    let stored_path = data.genesis();
    let json = match (fs::read_to_string(&stored_path).ok(), configured) {
        (Some(stored), Some(configured)) => {
            let (a, b) = (parse_chain(&stored, &stored_path)?, parse_chain(&configured, &config.node.genesis)?);
            if a.genesis_hash() != b.genesis_hash() {
                return Err(NodeError::Genesis {
                    path: config.node.genesis.clone(),
                    reason: format!("the data dir holds another chain (genesis {})", a.genesis_hash()),
                });
            }
            stored
        }
        (Some(stored), None) => stored,
        (None, configured) => {
            let json = configured.unwrap_or_else(|| tephra_exec::chainspec::DEV_GENESIS_JSON.to_string());
            parse_chain(&json, &stored_path)?;
            write_durably(&stored_path, json.as_bytes())?;
            json
        }
    };
    parse_chain(&json, &stored_path)
}

/// An OP Stack chain's rollup config: the data dir's rollup.json, written on
/// first use from `node.rollup_config` once it is checked against `chain`'s
/// genesis. `None` for an Ethereum chain; an OP Stack genesis without a
/// rollup config, or a different rollup config over an existing data dir,
/// is refused.
pub fn rollup_of(config: &Config, data: &DataDir, chain: &ChainSpec) -> Result<Option<RollupConfig>, NodeError> {
    let stored_path = data.rollup_config();
    let configured_path = &config.node.rollup_config;
    let configured = if configured_path.as_os_str().is_empty() {
        None
    } else {
        Some(fs::read_to_string(configured_path).map_err(io_error(configured_path))?)
    };
    let stored = if stored_path.exists() {
        Some(fs::read_to_string(&stored_path).map_err(io_error(&stored_path))?)
    } else {
        None
    };
    match (stored, configured) {
        (Some(stored), configured) => {
            let rollup = parse_rollup(&stored, &stored_path, chain)?;
            if let Some(configured) = configured
                && parse_rollup(&configured, configured_path, chain)? != rollup
            {
                let reason = "the data dir holds another rollup config".to_string();
                return Err(NodeError::Rollup { path: configured_path.clone(), reason });
            }
            Ok(Some(rollup))
        }
        (None, Some(configured)) => {
            let rollup = parse_rollup(&configured, configured_path, chain)?;
            write_durably(&stored_path, configured.as_bytes())?;
            Ok(Some(rollup))
        }
        (None, None) if chain.op().is_some() => {
            let reason = "an OP Stack genesis needs its rollup.json: tephra init --rollup-config FILE --genesis FILE";
            Err(NodeError::Rollup { path: stored_path, reason: reason.into() })
        }
        (None, None) => Ok(None),
    }
}

fn parse_rollup(json: &str, path: &Path, chain: &ChainSpec) -> Result<RollupConfig, NodeError> {
    let refused = |reason: String| NodeError::Rollup { path: path.to_path_buf(), reason };
    let rollup = RollupConfig::from_json(json).map_err(|e| refused(e.to_string()))?;
    chain.check_rollup(&rollup).map_err(|e| refused(e.to_string()))?;
    Ok(rollup)
}

fn parse_chain(json: &str, path: &Path) -> Result<ChainSpec, NodeError> {
    ChainSpec::from_genesis_json(json)
        .map_err(|e| NodeError::Genesis { path: path.to_path_buf(), reason: e.to_string() })
}

fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    tephra_types::durable::replace_file(path, bytes).map_err(io_error(path))
}

/// The block key named by `[signer]`, without the guard (log verify reads only its address).
pub fn load_key(config: &Config, data: &DataDir) -> Result<Box<dyn Signer>, NodeError> {
    open_key(&config.signer.key(), data, "block")
}

/// The key `key` names (the block key's or the batcher's: `role`), without
/// a guard; a file key is created on first use.
pub fn open_key(key: &KeyConfig, data: &DataDir, role: &str) -> Result<Box<dyn Signer>, NodeError> {
    Ok(match key.kind {
        SignerKind::File => {
            let path = data.0.join(&key.key_file);
            let (signer, created) = FileSigner::load_or_create(&path)?;
            if created {
                tracing::info!(address = %signer.address(), key_file = %path.display(), "created a dev {role} key");
            }
            Box::new(signer)
        }
        SignerKind::Pkcs11 => Box::new(Pkcs11Signer::open(&Pkcs11Config {
            module: key.pkcs11_module.clone(),
            token_label: key.pkcs11_token_label.clone(),
            pin_file: key.pkcs11_pin_file.clone(),
            key_label: key.pkcs11_key_label.clone(),
        })?),
        SignerKind::Yubihsm => {
            let connector = yubihsm_connector(&key.yubihsm_connector)
                .map_err(|e| NodeError::Signer(SignError::Key(e.to_string())))?;
            Box::new(YubiHsmSigner::open(&YubiHsmConfig {
                connector,
                auth_key_id: key.yubihsm_auth_key_id,
                password_file: key.yubihsm_password_file.clone(),
                key_id: key.yubihsm_key_id,
            })?)
        }
    })
}

/// `signer.yubihsm_connector` does not name a connector.
#[derive(Debug, thiserror::Error)]
#[error("signer.yubihsm_connector = {text}: {reason}")]
pub struct ConnectorError {
    pub text: String,
    pub reason: &'static str,
}

/// The YubiHSM connector `signer.yubihsm_connector` names: `http://HOST:PORT`
/// (yubihsm-connector), or `usb` with the `yubihsm-usb` feature.
pub fn yubihsm_connector(text: &str) -> Result<YubiConnector, ConnectorError> {
    #[cfg(feature = "yubihsm-usb")]
    if text == "usb" {
        return Ok(YubiConnector::Usb);
    }
    let refused = |reason| ConnectorError { text: text.to_string(), reason };
    let rest = text.strip_prefix("http://").ok_or_else(|| refused("expected http://HOST:PORT"))?;
    let (addr, port) = rest.rsplit_once(':').ok_or_else(|| refused("no port"))?;
    let port = port.parse().map_err(|_| refused("bad port"))?;
    Ok(YubiConnector::Http { addr: addr.to_string(), port })
}

/// Block signatures in the audit log, by signing hash.
pub(crate) fn audited_block_signatures(
    config: &Config,
    data: &DataDir,
) -> Result<alloy_primitives::map::B256Map<tephra_hsm::Signature65>, NodeError> {
    let (entries, _) = tephra_hsm::verify_audit_log(&data.0.join(&config.signer.audit_file))
        .map_err(|e| SignError::Device(e.to_string()))?;
    Ok(entries
        .into_iter()
        .filter(|e| e.payload_type == "sealed_block")
        .map(|e| (e.payload_hash, e.signature))
        .collect())
}

/// The block key, every signature audited, behind the double-sign guard
/// (asking `fence` for the newest leader epoch, in a pair).
pub fn load_signer(
    config: &Config,
    data: &DataDir,
    fence: Option<Arc<dyn tephra_hsm::EpochFence>>,
) -> Result<Arc<dyn Signer>, NodeError> {
    let key = AuditedSigner::open(load_key(config, data)?, &data.0.join(&config.signer.audit_file))
        .map_err(|e| SignError::Device(e.to_string()))?;
    let guard = SignGuard::open(&data.0.join(&config.signer.guard_file)).map_err(SignError::from)?;
    if let Some(mark) = guard.mark() {
        tracing::info!(number = mark.number, hash = %mark.hash, "signing guard high-water mark");
    }
    let guarded = GuardedSigner::new(key, guard);
    Ok(Arc::new(match fence {
        Some(fence) => guarded.with_fence(fence),
        None => guarded,
    }))
}

/// The batcher key named by `[batcher.key]`, every signature audited in
/// `batcher.audit_file`, behind the guard that lets it sign only batcher
/// transactions to `rollup`'s inbox. Its address must be the rollup's
/// batcher address, or verifiers ignore what it posts.
pub fn load_batcher_signer(
    config: &Config,
    data: &DataDir,
    rollup: &RollupConfig,
) -> Result<Arc<dyn Signer>, NodeError> {
    let key = open_key(&config.batcher.key, data, "batcher")?;
    let expected = rollup.genesis.system_config.batcher_addr;
    if key.address() != expected {
        return Err(NodeError::Signer(SignError::Key(format!(
            "the batcher key's address {} is not the rollup's batcher address {expected} (genesis.system_config.batcherAddr)",
            key.address()
        ))));
    }
    let audited = AuditedSigner::open(key, &data.0.join(&config.batcher.audit_file))
        .map_err(|e| SignError::Device(e.to_string()))?;
    let gwei = 1_000_000_000u128;
    let cap = u128::from(config.batcher.max_fee_per_gas_cap_gwei) * gwei;
    let rules = tephra_hsm::BatcherRules {
        l1_chain_id: rollup.l1_chain_id,
        batch_inbox: rollup.batch_inbox_address,
        max_fee_per_gas_cap_wei: cap,
        max_fee_per_blob_gas_cap_wei: cap,
    };
    Ok(Arc::new(tephra_hsm::BatcherGuard::new(audited, rules)))
}

/// Where each tile runs: `[topology]` against this machine.
pub fn placement(config: &Config) -> Result<(Machine, Placement), TopologyError> {
    let machine = Machine::discover()?;
    let placement = Placement::resolve(&config.topology, &machine, config.exec.shards - 1, config.net.busy_poll)?;
    Ok((machine, placement))
}

/// Reads every record of the batch log in `data`, truncating a torn tail
/// (with a warning).
pub fn read_log(data: &DataDir) -> Result<Vec<Record>, NodeError> {
    fs::create_dir_all(data.log()).map_err(io_error(&data.log()))?;
    Ok(tephra_batchlog::read_all(&data.log(), |segment, offset, reason| {
        tracing::warn!(segment = %segment.display(), offset, %reason, "torn batch log tail truncated");
    })?)
}

/// The chain the log holds once its rewinds are applied (an OP Stack
/// chain's unsafe blocks abandoned after L1 reorgs), and the transactions
/// they abandoned.
pub fn read_chain(log_dir: &Path) -> Result<tephra_batchlog::Chain, NodeError> {
    fs::create_dir_all(log_dir).map_err(io_error(log_dir))?;
    let records = tephra_batchlog::read_all(log_dir, |segment, offset, reason| {
        tracing::warn!(segment = %segment.display(), offset, %reason, "torn batch log tail truncated");
    })?;
    Ok(tephra_batchlog::chain_of(records)?)
}

/// The newest snapshot (`path`, or the one before it) whose block the
/// chain still holds (a rewind can abandon the block of the newest), and,
/// with `not_after`, that is not past that block: replay from it then
/// re-executes every block after it (the state history's, past its last
/// stored block).
pub fn usable_snapshot(
    path: &Path,
    chain: &tephra_batchlog::Chain,
    not_after: Option<u64>,
) -> Result<Option<(tephra_exec::StateDb, snapshot::SnapshotMeta)>, NodeError> {
    for candidate in [path.to_path_buf(), previous_snapshot(path)] {
        if !candidate.exists() {
            continue;
        }
        let (state, meta) = snapshot::load(&candidate)?;
        if not_after.is_some_and(|last| meta.block_number > last) {
            tracing::info!(snapshot = %candidate.display(), block = meta.block_number, "snapshot past the state history's last block: not used");
            continue;
        }
        if chain.sealed_hash(meta.block_number) == Some(meta.block_hash) {
            return Ok(Some((state, meta)));
        }
        tracing::warn!(snapshot = %candidate.display(), block = meta.block_number, "snapshot of an abandoned block: not used");
    }
    Ok(None)
}

/// Where the snapshot before the newest is kept.
pub fn previous_snapshot(path: &Path) -> PathBuf {
    path.with_extension("prev")
}

/// Blocks `log verify` keeps while it replays: a signature is logged within
/// a few blocks of its seal.
const VERIFY_HISTORY_BLOCKS: usize = 1024;

/// `tephra log verify`: re-executes the whole log from genesis and checks
/// every root, hash and signature.
pub fn verify_log(config: &Config) -> Result<replay::Replayed, NodeError> {
    let data = DataDir(config.node.data_dir.clone());
    let _lock = lock_data_dir(&data)?;
    let chain = chain_of(config, &data)?;
    let signer = load_key(config, &data)?;
    let records = read_chain(&data.log())?.records;
    // Verification keeps only what a signature may still refer to.
    Ok(replay::replay(&chain, records, None, Some(signer.address()), VERIFY_HISTORY_BLOCKS, None)?)
}
