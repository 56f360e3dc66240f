//! tephra's execution core, with no I/O of its own beyond state snapshots:
//! verify, pack, execute with revm, seal.
//!
//! ```text
//! raw bytes -> verify -> pack (pool) -> executor (revm) -> BlockBuilder::seal
//!              decode    nonce queues   receipts          roots, header, hash
//!              recover   mini-blocks    state commit
//!                                          ^
//!                   OP Stack: deposits ----+ executed first, at open (op-revm)
//! ```

pub mod block;
pub mod call;
pub mod chainspec;
pub mod commitment;
pub mod deposit;
pub mod dev;
mod durable;
pub mod evm;
pub mod executor;
pub mod op_fees;
pub mod parallel;
pub mod params;
pub mod pool;
pub mod snapshot;
pub mod state;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod trace;
pub mod trie;
pub mod verify;

pub use block::{BlockBuilder, SealRoots, SealedBlock};
pub use call::{CallOutcome, CallRequest, EstimateError};
pub use chainspec::ChainSpec;
pub use commitment::{Commitment, StateDiff};
pub use deposit::ExecutedDeposit;
pub use durable::{AccountBefore, BlockChanges, SortedChanges, StorageBeforeBlock};
pub use executor::{ExecutedTx, Executor, SequentialExecutor, TxOutcome};
pub use op_fees::{OpTxFees, op_tx_fees};
/// op-revm's L1 fee parameters and OP Stack hardforks, for the crates that
/// report them (exec stays the one crate that speaks revm).
pub use op_revm::{L1BlockInfo, OpSpecId};
pub use parallel::{ParallelExecutor, ShardConfig};
pub use params::{BlockChoice, BlockParams, Eip1559Params, OpChoice, OpenBlockError};
pub use state::{DurableState, StateDb};
pub use verify::{VerifiedTx, Verifier, VerifyRules};
