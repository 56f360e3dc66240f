//! exec: runs a batch of verified transactions into the open block.
//!
//! `Executor` is the boundary a parallel executor replaces: it receives the
//! batch in sequence order and must leave the state and return outcomes exactly
//! as `SequentialExecutor` does.

use alloy_consensus::{Eip658Value, Receipt, Transaction as _};
use alloy_primitives::{Address, Log, map::AddressSet};
use revm::context_interface::result::{ExecutionResult, HaltReason};
use tephra_types::Reject;

use crate::{evm, params::BlockParams, state::StateDb, verify::VerifiedTx};

/// A transaction included in the open block.
#[derive(Clone, Debug)]
pub struct ExecutedTx {
    pub tx: VerifiedTx,
    /// Status, cumulative gas and logs, as the receipts root commits to them.
    pub receipt: Receipt<Log>,
    pub gas_used: u64,
    /// For a creation, the address it deploys to (set even if it failed).
    pub contract_address: Option<Address>,
}

/// What became of one transaction of a batch.
#[derive(Clone, Debug)]
pub enum TxOutcome {
    /// Executed into the block (status 1, or 0 for a revert or halt).
    Included(ExecutedTx),
    /// Invalid against the state at execution (nonce, funds): dropped.
    Dropped { tx: VerifiedTx, reject: Reject },
    /// Its gas limit does not fit in what is left of the block: try the next one.
    BlockFull(VerifiedTx),
}

/// Executes batches of transactions, in order, into an open block.
pub trait Executor {
    /// Executes `txs` in order on `state`, where the open block has already used
    /// `block_gas_used`. Commits every included transaction to `state` and
    /// pushes one outcome per transaction, in the same order, to `outcomes`.
    fn execute(
        &mut self,
        state: &mut StateDb,
        block: &BlockParams,
        block_gas_used: u64,
        txs: Vec<VerifiedTx>,
        outcomes: &mut Vec<TxOutcome>,
    );
}

/// The block-full rule both executors follow, in sequence order: a
/// transaction whose gas limit does not fit in what is left of the block waits
/// for the next one, and so do its sender's later transactions (executing them
/// now would fail on the nonce gap).
#[derive(Debug)]
pub(crate) struct BlockGas {
    used: u64,
    limit: u64,
    deferred: AddressSet,
}

impl BlockGas {
    pub(crate) fn new(block: &BlockParams, used: u64) -> Self {
        Self { used, limit: block.gas_limit, deferred: AddressSet::default() }
    }

    /// Whether `tx` may execute now; if not, its sender is deferred.
    pub(crate) fn admits(&mut self, tx: &VerifiedTx) -> bool {
        if !self.fits(tx, self.used) {
            self.deferred.insert(tx.sender);
            return false;
        }
        true
    }

    fn fits(&self, tx: &VerifiedTx, used: u64) -> bool {
        !self.deferred.contains(&tx.sender) && tx.gas_limit() <= self.limit - used
    }

    /// Whether `txs`, given the gas each would use, would all be admitted in
    /// order. Changes nothing.
    pub(crate) fn admits_all<'a>(&self, txs: impl IntoIterator<Item = (&'a VerifiedTx, u64)>) -> bool {
        let mut used = self.used;
        for (tx, gas_used) in txs {
            if !self.fits(tx, used) {
                return false;
            }
            used += gas_used;
        }
        true
    }

    /// The outcome of `tx` given what the EVM made of it.
    pub(crate) fn outcome(&mut self, tx: VerifiedTx, result: Result<ExecutionResult<HaltReason>, Reject>) -> TxOutcome {
        let result = match result {
            Ok(result) => result,
            Err(reject) => return TxOutcome::Dropped { tx, reject },
        };
        let gas_used = result.gas().tx_gas_used();
        self.used += gas_used;
        // As geth's receipts: the address a creation targets, even if it failed.
        let contract_address = tx.envelope.is_create().then(|| tx.sender.create(tx.nonce()));
        let receipt = Receipt {
            status: Eip658Value::Eip658(result.is_success()),
            cumulative_gas_used: self.used,
            logs: result.into_logs(),
        };
        TxOutcome::Included(ExecutedTx { tx, receipt, gas_used, contract_address })
    }
}

/// The reference executor: one transaction after another on one core.
#[derive(Clone, Copy, Debug, Default)]
pub struct SequentialExecutor;

impl SequentialExecutor {
    /// Executes `txs` in order straight on the state of `vm`.
    pub(crate) fn run<I: IntoIterator<Item = VerifiedTx>>(
        vm: &mut evm::StateEvm<'_>,
        gas: &mut BlockGas,
        txs: I,
        outcomes: &mut Vec<TxOutcome>,
    ) {
        for tx in txs {
            if !gas.admits(&tx) {
                outcomes.push(TxOutcome::BlockFull(tx));
                continue;
            }
            let result = evm::transact_commit(vm, &tx);
            outcomes.push(gas.outcome(tx, result));
        }
    }
}

impl Executor for SequentialExecutor {
    fn execute(
        &mut self,
        state: &mut StateDb,
        block: &BlockParams,
        block_gas_used: u64,
        txs: Vec<VerifiedTx>,
        outcomes: &mut Vec<TxOutcome>,
    ) {
        let mut vm = evm::state_evm(state, block);
        Self::run(&mut vm, &mut BlockGas::new(block, block_gas_used), txs, outcomes);
    }
}
