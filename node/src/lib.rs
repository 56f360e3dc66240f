//! tephra-node: the sequencer node's parts, wired by `node::start`; the
//! `tephra` binary (crate tephra-cli) is its command line. The parser of what
//! comes from the operator (`config`) is public so that the fuzz targets reach
//! it, and the log index (`log_index`) so that its bench does; the batch log is its own crate, tephra-batchlog.

mod batcher;
mod boot;
mod chain_view;
pub mod config;
mod delegation;
mod error;
mod filters;
mod flashblocks;
mod format;
pub mod ha;
mod health;
mod history;
mod interop;
mod leadership;
pub mod log_index;
mod metrics;
pub mod node;
mod op;
mod replay;
mod rpc;
mod sequencer;
mod shared;
pub mod topology;
mod udp;
mod view;
