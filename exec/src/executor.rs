//! exec: runs a batch of verified transactions into the open block.
//!
//! `Executor` is the boundary a parallel executor replaces: it receives the
//! batch in sequence order and must leave the state and return outcomes exactly
//! as `SequentialExecutor` does.

use alloy_consensus::{Eip658Value, Receipt, Transaction as _};
use alloy_primitives::{Address, Log, map::AddressSet};
use revm::{Context, ExecuteCommitEvm, ExecuteEvm, MainBuilder, MainContext};
use tephra_types::Reject;

use crate::{block::BlockParams, evm, state::StateDb, verify::VerifiedTx};

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

/// The reference executor: one transaction after another on one core.
#[derive(Clone, Copy, Debug, Default)]
pub struct SequentialExecutor;

impl Executor for SequentialExecutor {
    fn execute(
        &mut self,
        state: &mut StateDb,
        block: &BlockParams,
        mut block_gas_used: u64,
        txs: Vec<VerifiedTx>,
        outcomes: &mut Vec<TxOutcome>,
    ) {
        state.set_spec(block.spec);
        let mut vm = Context::mainnet()
            .with_db(&mut *state)
            .with_block(evm::block_env(block))
            .with_cfg(evm::cfg_env(block.chain_id, block.spec))
            .build_mainnet();
        // A sender whose transaction did not fit keeps its later ones for the
        // next block too: executing them now would fail on the nonce gap.
        let mut deferred = AddressSet::default();
        for tx in txs {
            if deferred.contains(&tx.sender) || tx.gas_limit() > block.gas_limit - block_gas_used {
                deferred.insert(tx.sender);
                outcomes.push(TxOutcome::BlockFull(tx));
                continue;
            }
            match vm.transact(evm::tx_env(&tx)) {
                Ok(output) => {
                    vm.commit(output.state);
                    let result = output.result;
                    let gas_used = result.gas().tx_gas_used();
                    block_gas_used += gas_used;
                    // As geth's receipts: the address a creation targets, even if it failed.
                    let contract_address = tx.envelope.is_create().then(|| tx.sender.create(tx.nonce()));
                    let receipt = Receipt {
                        status: Eip658Value::Eip658(result.is_success()),
                        cumulative_gas_used: block_gas_used,
                        logs: result.into_logs(),
                    };
                    outcomes.push(TxOutcome::Included(ExecutedTx { tx, receipt, gas_used, contract_address }));
                }
                Err(error) => outcomes.push(TxOutcome::Dropped { tx, reject: evm::reject_of(error) }),
            }
        }
    }
}
