//! High availability for tephra: leadership through an etcd lease with the
//! leader's epoch as fencing token (`election`), and the batch log streamed
//! from the leader to standbys over a mutually authenticated channel
//! (`channel`, `replication`). The node glues them to its sequencer.

pub mod channel;
pub mod election;
pub mod replication;

pub use channel::{Secret, SecretError};
pub use election::{Election, EtcdConfig, EtcdError, LeaderInfo, LeaderValue, Leadership, LeaseState, SignedRecord};
pub use replication::{EpochStart, Feed, Follower, LeaderConfig, LogSource, Message, ReplicationMode};
