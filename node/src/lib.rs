//! tephra-node: the sequencer node's parts, wired by `node::start`; the
//! `tephra` binary (main.rs) is its command line. The parser of what comes
//! from the operator (`config`) is public so that the fuzz targets reach it;
//! the batch log is its own crate, tephra-batchlog.

pub mod config;
mod delegation;
mod format;
pub mod ha;
pub mod host;
pub mod hsm_cli;
mod metrics;
pub mod node;
mod replay;
mod rpc;
mod rpc_limit;
mod sequencer;
pub mod systemd;
mod udp;
mod view;
