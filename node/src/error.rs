//! The node's error at its boundary: what stops a start, a role or `log verify`.

use std::path::{Path, PathBuf};

use tephra_batchlog::LogError;
use tephra_dataplane::{DataplaneError, topology::TopologyError};
use tephra_exec::snapshot;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("genesis {path}: {reason}")]
    Genesis { path: PathBuf, reason: String },
    #[error("rollup config {path}: {reason}")]
    Rollup { path: PathBuf, reason: String },
    /// An OP Stack chain needs what an Ethereum-mode one does not.
    #[error("OP Stack chain {l2_chain_id}: {reason}")]
    OpStack { l2_chain_id: u64, reason: String },
    #[error("data dir {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Replay(#[from] crate::replay::ReplayError),
    #[error("batch log: {0}")]
    Rewind(#[from] tephra_batchlog::RewindError),
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
    #[error(transparent)]
    Signer(#[from] tephra_hsm::SignError),
    #[error("exec shards: {0}")]
    Shards(#[from] tephra_exec::parallel::ShardConfigError),
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error(transparent)]
    Filters(#[from] crate::filters::FilterError),
    #[error(transparent)]
    History(#[from] tephra_history::HistoryError),
    /// The Hyperlane validator's store, state or thread (`[interop]`).
    #[error("Hyperlane validator: {0}")]
    Interop(String),
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error("data dir {0} is in use by another tephra process")]
    Locked(PathBuf),
    #[error("high availability: {0}")]
    Ha(String),
    #[error("high availability: {0}")]
    Secret(#[from] tephra_ha::SecretError),
    #[error(
        "the chain's block gas limit {block_gas_limit} allows a sealed block's record of up to {record_bytes_max} \
         bytes, above the batch log's record limit of {record_size_max_bytes}: sealing a full block would stop the node"
    )]
    SealedRecordTooLarge { block_gas_limit: u64, record_bytes_max: u64, record_size_max_bytes: usize },
}

/// An I/O error on `path`, as a `NodeError`.
pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> NodeError + '_ {
    move |source| NodeError::Io { path: path.to_path_buf(), source }
}
