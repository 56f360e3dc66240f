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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use alloy_consensus::TxEnvelope;
    use alloy_eips::Decodable2718;
    use tephra_hsm::FileSigner;
    use tephra_l1::{L1BatcherRpc, L1Block, L1Log, L1Rpc, L1Transaction};

    use super::*;

    /// A chain that answers what each test sets, and keeps what it was sent.
    #[derive(Default)]
    struct FakeChain {
        estimate: Option<Result<u64, String>>,
        mined: Option<bool>,
        sent: Mutex<Vec<Vec<u8>>>,
    }

    impl L1Rpc for FakeChain {
        fn head_number(&self) -> Result<u64, L1Error> {
            Ok(1)
        }
        fn block_by_number(&self, _: u64) -> Result<Option<L1Block>, L1Error> {
            Ok(None)
        }
        fn block_by_hash(&self, _: B256) -> Result<Option<L1Block>, L1Error> {
            Ok(None)
        }
        fn logs(&self, _: B256, _: Address, _: B256) -> Result<Vec<L1Log>, L1Error> {
            Ok(Vec::new())
        }
    }

    impl L1BatcherRpc for FakeChain {
        fn chain_id(&self) -> Result<u64, L1Error> {
            Ok(7)
        }
        fn nonce(&self, _: Address, pending: bool) -> Result<u64, L1Error> {
            assert!(pending, "the next nonce counts pooled transactions");
            Ok(3)
        }
        fn suggested_tip_wei(&self) -> Result<u64, L1Error> {
            Ok(2)
        }
        fn send_raw(&self, raw: &[u8]) -> Result<B256, Result<SendRefusal, L1Error>> {
            self.sent.lock().unwrap().push(raw.to_vec());
            Ok(alloy_primitives::keccak256(raw))
        }
        fn block_with_txs(&self, _: u64) -> Result<Option<(L1Block, Vec<L1Transaction>)>, L1Error> {
            Ok(None)
        }
        fn finalized_number(&self) -> Result<Option<u64>, L1Error> {
            Ok(None)
        }
    }

    impl ChainRpc for FakeChain {
        fn call(&self, _: Address, _: &[u8]) -> Result<Bytes, L1Error> {
            Ok(Bytes::new())
        }
        fn estimate_gas(&self, _: Address, _: Option<Address>, _: &[u8]) -> Result<u64, L1Error> {
            match self.estimate.clone().expect("the test sets the estimate") {
                Ok(gas) => Ok(gas),
                Err(message) => Err(L1Error::Refused { method: "eth_estimateGas", code: 3, message }),
            }
        }
        fn base_fee_wei(&self) -> Result<u64, L1Error> {
            Ok(100)
        }
        fn receipt(&self, hash: B256) -> Result<Option<Receipt>, L1Error> {
            Ok(self.mined.map(|succeeded| Receipt {
                transaction_hash: hash,
                block_number: 9,
                succeeded,
                gas_used: 21_000,
                contract_address: None,
                logs: Vec::new(),
            }))
        }
        fn code(&self, _: Address) -> Result<Bytes, L1Error> {
            Ok(Bytes::new())
        }
        fn logs_in_range(&self, _: Address, _: B256, _: u64, _: u64) -> Result<Vec<(u64, L1Log)>, L1Error> {
            Ok(Vec::new())
        }
    }

    fn send(chain: &FakeChain) -> Result<Receipt, SendError> {
        let signer = FileSigner::from_bytes(&[3; 32]).unwrap();
        let transactor = Transactor {
            chain,
            signer: &signer,
            chain_id: 7,
            gas_max: 100_000,
            receipt_timeout: Duration::from_millis(50),
        };
        transactor.send(Some(Address::repeat_byte(9)), Bytes::from_static(b"call"))
    }

    #[test]
    fn a_transaction_is_signed_with_the_margin_and_fees_and_waited_for() {
        let chain = FakeChain { estimate: Some(Ok(40_000)), mined: Some(true), ..Default::default() };
        assert_eq!(send(&chain).unwrap().block_number, 9);
        let sent = chain.sent.lock().unwrap();
        let TxEnvelope::Eip1559(tx) = TxEnvelope::decode_2718(&mut sent[0].as_slice()).unwrap() else { panic!() };
        let signer = FileSigner::from_bytes(&[3; 32]).unwrap();
        let signature = tx.signature();
        let mut compact = [0u8; 64];
        compact[..32].copy_from_slice(&signature.r().to_be_bytes::<32>());
        compact[32..].copy_from_slice(&signature.s().to_be_bytes::<32>());
        let hash = alloy_consensus::SignableTransaction::signature_hash(tx.tx());
        let from = tephra_types::crypto::recover_address(hash, &compact, u8::from(signature.v()));
        assert_eq!(from, Some(tephra_hsm::Signer::address(&signer)));
        let tx = tx.tx();
        assert_eq!((tx.chain_id, tx.nonce, tx.gas_limit), (7, 3, 50_000), "25% over the estimate");
        assert!(tx.max_fee_per_gas >= 2 * 100 && tx.max_priority_fee_per_gas >= 2);
    }

    #[test]
    fn past_the_bound_a_revert_or_no_receipt_is_an_error_that_says_so() {
        let over = FakeChain { estimate: Some(Ok(100_001)), mined: Some(true), ..Default::default() };
        assert!(matches!(send(&over), Err(SendError::GasOverBound { estimate: 100_001, gas_max: 100_000 })));
        assert!(over.sent.lock().unwrap().is_empty(), "nothing sent past the bound");

        let reverts = FakeChain { estimate: Some(Err("execution reverted: !threshold".into())), ..Default::default() };
        assert!(matches!(send(&reverts), Err(SendError::WouldRevert(reason)) if reason.contains("!threshold")));

        let failed = FakeChain { estimate: Some(Ok(21_000)), mined: Some(false), ..Default::default() };
        assert!(matches!(send(&failed), Err(SendError::Reverted { block: 9, .. })));

        let never = FakeChain { estimate: Some(Ok(21_000)), mined: None, ..Default::default() };
        assert!(matches!(send(&never), Err(SendError::NotMined { .. })));
        // Near the bound the margin is cut to it.
        let near = FakeChain { estimate: Some(Ok(90_000)), mined: Some(true), ..Default::default() };
        send(&near).unwrap();
        let sent = near.sent.lock().unwrap();
        let TxEnvelope::Eip1559(tx) = TxEnvelope::decode_2718(&mut sent[0].as_slice()).unwrap() else { panic!() };
        assert_eq!(tx.tx().gas_limit, 100_000);
    }
}
