//! tephra's view of L1 for an OP Stack sequencer (README.md): the L1 node
//! behind a small trait, the follower that keeps a window of canonical L1
//! blocks and their deposits through reorgs, the choice of each L2 block's
//! L1 origin, and the L1-info deposit every L2 block starts with.

pub mod batcher_rpc;
pub mod block;
pub mod deposit;
pub mod error;
pub mod follower;
pub mod l1_info;
pub mod origin;
pub mod rpc;

pub use batcher_rpc::{L1BatcherRpc, L1Transaction, SendRefusal};
pub use block::{L1Block, L1Log};
pub use deposit::{Deposit, DepositError, decode_deposit_log, user_deposit_source_hash};
pub use error::L1Error;
pub use follower::{BlockDeposits, FollowerConfig, L1Event, L1Follower, L1Status};
pub use l1_info::{L1InfoIsthmus, SystemConfigValues};
pub use origin::{HoldReason, OriginChoice, choose_origin};
pub use rpc::{L1JsonRpc, L1Rpc, UnsupportedUrl};
