//! Sends one transaction and waits for its outcome: the deployer's and the
//! relayer's only way to write to a chain. The gas is estimated and bounded
//! (`gas_max`), the fees follow the chain's base fee and tip as the
//! batcher's do, the key signs through the `Signer` trait (a file key or an
//! HSM), and a transaction that reverts, or is not mined in time, is an
//! error that says so.

use std::time::{Duration, Instant};

use alloy_consensus::TxEip1559;
use alloy_primitives::{Address, B256, Bytes, TxKind, U256};
use tephra_batcher::l1_tx::{Fees, signed_tx};
use tephra_hsm::{L1Tx, Payload, SignError, Signer};
use tephra_l1::{L1Error, SendRefusal};

use crate::chain::{ChainRpc, Receipt};

/// Gas added to an estimate, in percent: an estimate is exact only for the
/// state it ran on, and a call that forwards 63/64 of its gas (a recipient's
/// `handle`) needs more than it uses.
const GAS_MARGIN_PERCENT: u64 = 25;
/// How often a receipt is asked for while waiting.
const RECEIPT_POLL: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("chain: {0}")]
    Rpc(#[from] L1Error),
    #[error("signer: {0}")]
    Sign(#[from] SignError),
    /// The estimate ran the call and it reverted: the node's words.
    #[error("the transaction would revert: {0}")]
    WouldRevert(String),
    #[error("the transaction needs {estimate} gas, over the bound of {gas_max}")]
    GasOverBound { estimate: u64, gas_max: u64 },
    #[error("the node refused the transaction: {0:?}")]
    Refused(SendRefusal),
    #[error("transaction {hash} reverted in block {block}")]
    Reverted { hash: B256, block: u64 },
    #[error("transaction {hash} not mined within {waited_ms} ms")]
    NotMined { hash: B256, waited_ms: u128 },
}

/// One key's transactions on one chain.
pub struct Transactor<'a> {
    pub chain: &'a dyn ChainRpc,
    pub signer: &'a dyn Signer,
    pub chain_id: u64,
    /// No transaction may ask for more gas than this.
    pub gas_max: u64,
    pub receipt_timeout: Duration,
}

impl core::fmt::Debug for Transactor<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Transactor").field("from", &self.address()).field("chain_id", &self.chain_id).finish()
    }
}

impl Transactor<'_> {
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// Sends `data` to `to` (None: a contract creation) and waits for it to
    /// be mined: its receipt if it succeeded.
    pub fn send(&self, to: Option<Address>, data: Bytes) -> Result<Receipt, SendError> {
        let from = self.address();
        let estimate = match self.chain.estimate_gas(from, to, &data) {
            Ok(estimate) => estimate,
            Err(L1Error::Refused { message, .. }) => return Err(SendError::WouldRevert(message)),
            Err(error) => return Err(error.into()),
        };
        if estimate > self.gas_max {
            return Err(SendError::GasOverBound { estimate, gas_max: self.gas_max });
        }
        let gas_limit = (estimate.saturating_mul(100 + GAS_MARGIN_PERCENT) / 100).min(self.gas_max);
        let fees = Fees::suggested(self.chain.base_fee_wei()?.into(), self.chain.suggested_tip_wei()?.into());
        let tx = TxEip1559 {
            chain_id: self.chain_id,
            nonce: self.chain.nonce(from, true)?,
            gas_limit,
            max_fee_per_gas: fees.max_fee_per_gas,
            max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
            to: to.map_or(TxKind::Create, TxKind::Call),
            value: U256::ZERO,
            access_list: Default::default(),
            input: data,
        };
        let signature = self.signer.sign(&Payload::L1Transaction(L1Tx::Eip1559(&tx)))?;
        let (hash, raw) = signed_tx(tx, &signature.0);
        match self.chain.send_raw(&raw) {
            Ok(_) | Err(Ok(SendRefusal::AlreadyKnown)) => {}
            Err(Ok(refusal)) => return Err(SendError::Refused(refusal)),
            Err(Err(error)) => return Err(error.into()),
        }
        self.mined(hash)
    }

    /// The receipt of `hash` once mined, or why not.
    fn mined(&self, hash: B256) -> Result<Receipt, SendError> {
        let started = Instant::now();
        loop {
            if let Some(receipt) = self.chain.receipt(hash)? {
                if !receipt.succeeded {
                    return Err(SendError::Reverted { hash, block: receipt.block_number });
                }
                return Ok(receipt);
            }
            if started.elapsed() > self.receipt_timeout {
                return Err(SendError::NotMined { hash, waited_ms: started.elapsed().as_millis() });
            }
            std::thread::sleep(RECEIPT_POLL);
        }
    }
}
