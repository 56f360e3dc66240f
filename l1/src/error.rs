//! Why the L1 node gave no usable answer: the one error type of the crate's
//! boundary. Every variant leaves the follower unreachable until an answer
//! comes back (`L1Status::Unreachable`, with the error as its reason).

use alloy_primitives::B256;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum L1Error {
    /// No answer: no connection, a timeout, an HTTP error status.
    #[error("the node is unreachable: {reason}")]
    Unreachable { reason: String },
    /// An answer that is not what `method` returns: bad JSON, a missing or
    /// mistyped field, a number out of range, a block other than the one
    /// asked for, a response over the size cap.
    #[error("the node's answer to {method} is malformed: {reason}")]
    Malformed { method: &'static str, reason: String },
    /// A JSON-RPC error object.
    #[error("the node refused {method}: {code} {message}")]
    Refused { method: &'static str, code: i64, message: String },
    /// The head fell further back than any reorg the follower accepts: a node
    /// resyncing, or another chain.
    #[error("L1 head went back from block {from} to {to}, more than a reorg")]
    HeadWentBack { from: u64, to: u64 },
    /// No block among the last `searched` below `tip` is canonical any more.
    #[error("L1 reorg deeper than the {searched} blocks searched below block {tip}")]
    ReorgTooDeep { tip: u64, searched: u64 },
    /// The block the follower starts from (the rollup's genesis L1 block, or
    /// a restart's origin) is not on the L1 node's chain: a node still
    /// syncing, the wrong L1, or the origin reorged out while tephra was down.
    #[error("L1 block {number} ({hash}) to follow from is not on the L1 node's chain")]
    AnchorMissing { number: u64, hash: B256 },
}
