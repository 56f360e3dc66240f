//! kona-oracle: an independent OP Stack verifier for tephra. It derives each block's payload
//! attributes with kona-derive from the L1, executes them with kona-executor from its own state,
//! and requires tephra's block hashes (and output roots). `verify` takes tephra's user
//! transactions from tephra; `derive` runs kona-derive's whole pipeline on the batches tephra's
//! batcher posted to the L1. Nothing of tephra is linked.

pub mod blobs;
pub mod chain;
pub mod derive;
pub mod genesis;
pub mod l1;
pub mod rpc;
pub mod verify;

use std::{
    future::Future,
    pin::pin,
    task::{Context, Poll, Waker},
};

/// How the oracle fails: `Mismatch` (exit 1) is a finding about the chain checked; `Io`
/// (exit 2) is a usage, file or transport problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    Mismatch(String),
    Io(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Mismatch(e) => write!(f, "mismatch: {e}"),
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

/// A provider error, shown to kona-derive as `PipelineError::Provider`: temporary when `retry`
/// (the data may come: an L1 block not mined yet, a node not answering), else critical.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OracleError {
    pub message: String,
    pub retry: bool,
}

impl OracleError {
    /// An error retrying cannot fix (data that does not check out, a bug).
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), retry: false }
    }

    /// Data not there yet, or a node not answering: kona-derive retries.
    pub fn retry(message: impl Into<String>) -> Self {
        Self { message: message.into(), retry: true }
    }
}

impl std::fmt::Display for OracleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OracleError {}

/// Runs a future whose providers are blocking (they never return `Pending`, but a pending
/// poll is retried anyway).
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::yield_now();
    }
}
