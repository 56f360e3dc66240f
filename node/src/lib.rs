//! tephra-node: the sequencer node's parts, wired by `node::start`; the
//! `tephra` binary (crate tephra-cli) is its command line. The parser of what
//! comes from the operator (`config`) is public so that the fuzz targets reach
//! it; the batch log is its own crate, tephra-batchlog.

pub mod config;
mod delegation;
mod format;
pub mod ha;
mod metrics;
pub mod node;
mod replay;
mod rpc;
mod rpc_limit;
mod sequencer;
mod udp;
mod view;
