//! Hyperlane-compatible interop, the parts that are formats and arithmetic:
//! messages and their ids, the incremental Merkle tree the origin's
//! MerkleTreeHook keeps, checkpoints and the digests validators sign, the
//! checkpoint syncer's files, and the metadata MessageIdMultisigIsm checks.
//! Everything here follows Hyperlane's contracts and agents at
//! `@hyperlane-xyz/core` 12.1.0 (README.md); nothing does I/O but
//! `checkpoint_store`.
//!
//! ```text
//! origin: Mailbox.dispatch ─> Dispatch(message) ─> MerkleTreeHook: InsertedIntoTree(id, index)
//!   validator: tree.insert(id) ─> root ─> Checkpoint{hook, origin, root, index} + id ─> digest ─> sign
//!              ─> checkpoint_store: <dir>/{index}_with_id.json, index.json
//!   relayer:   signatures of the validator set, in its order ─> ism_metadata ─> Mailbox.process on the destination
//! ```

pub mod attester;
pub mod chain;
pub mod checkpoint;
pub mod checkpoint_store;
pub mod contracts;
pub mod deploy;
pub mod events;
pub mod follower;
pub mod message;
pub mod metadata;
pub mod relayer;
pub mod rpc_follower;
pub mod transactor;
pub mod tree;

pub use attester::{AttestError, Attester, Position};
pub use chain::{ChainRpc, Receipt};
pub use checkpoint::{Checkpoint, CheckpointWithId, EthSignature, SignedCheckpoint};
pub use checkpoint_store::{CheckpointStore, StoreError};
pub use deploy::{DeployError, Deployment, deploy};
pub use follower::{FollowError, TreeFollower};
pub use message::{HyperlaneMessage, MessageError};
pub use metadata::{MetadataError, message_id_multisig_metadata};
pub use transactor::{SendError, Transactor};
pub use tree::{IncrementalTree, TreeFull};
