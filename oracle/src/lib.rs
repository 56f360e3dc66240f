//! kona-oracle: an independent OP Stack verifier for tephra. It derives each block's payload
//! attributes with kona-derive from the L1, executes them with kona-executor from its own state,
//! and requires tephra's block hashes (and output roots). Nothing of tephra is linked.

pub mod chain;
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

/// A provider error (shown to kona-derive as `PipelineError::Provider`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OracleError(pub String);

impl std::fmt::Display for OracleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
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
