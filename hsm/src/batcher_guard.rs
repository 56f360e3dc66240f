//! The batcher key's guard: the key that pays for posting batches to L1
//! signs nothing but batcher transactions. Every L1 transaction it is asked
//! to sign must go to the rollup's batch inbox on the rollup's L1, carry no
//! value, grant no access list or delegation, and pay at most the fee caps
//! the operator set, so that neither a bug nor a compromised caller can
//! move the key's funds or burn them in fees. Block signatures and
//! preconfirmations are refused outright: those are the block key's.
//!
//! Two signatures at one nonce are not refused: a fee bump replaces a stuck
//! transaction with the same frames, and at most one of them is ever
//! included, so no double-sign guard is needed here.

use alloy_primitives::{Address, B256, U256};

use crate::{L1Tx, Payload, SignError, Signature65, Signer};

/// What the batcher key may sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatcherRules {
    /// The L1's chain id.
    pub l1_chain_id: u64,
    /// The rollup's batch inbox (rollup config `batch_inbox_address`).
    pub batch_inbox: Address,
    /// The highest `max_fee_per_gas` signed, in wei.
    pub max_fee_per_gas_cap_wei: u128,
    /// The highest `max_fee_per_blob_gas` signed, in wei.
    pub max_fee_per_blob_gas_cap_wei: u128,
}

/// Why the batcher guard refused a signature.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatcherGuardError {
    #[error("the batcher key signs only L1 batcher transactions, not a {0}")]
    NotATransaction(&'static str),
    #[error("chain id {0:?}, not the L1's {1}")]
    ChainId(Option<u64>, u64),
    #[error("to {0:?}, not the batch inbox {1}")]
    NotTheInbox(Option<Address>, Address),
    #[error("a value of {0} wei: batcher transactions carry none")]
    Value(U256),
    #[error("an access list or authorization list: batcher transactions carry none")]
    Extras,
    #[error("max fee per gas {fee} wei over the cap of {cap} wei (batcher.max_fee_per_gas_cap_gwei)")]
    FeeCap { fee: u128, cap: u128 },
    #[error("max fee per blob gas {fee} wei over the cap of {cap} wei (batcher.max_fee_per_blob_gas_cap_gwei)")]
    BlobFeeCap { fee: u128, cap: u128 },
}

/// A signer that signs only what `BatcherRules` allow (and self-tests).
#[derive(Debug)]
pub struct BatcherGuard<S> {
    inner: S,
    rules: BatcherRules,
}

impl<S: Signer> BatcherGuard<S> {
    pub fn new(inner: S, rules: BatcherRules) -> Self {
        Self { inner, rules }
    }

    pub fn rules(&self) -> &BatcherRules {
        &self.rules
    }
}

impl BatcherRules {
    /// Whether the batcher key may sign `payload`.
    pub fn admit(&self, payload: &Payload<'_>) -> Result<(), BatcherGuardError> {
        let tx = match payload {
            Payload::L1Transaction(tx) => *tx,
            Payload::SelfTest { .. } => return Ok(()),
            Payload::SealedBlock { .. } => return Err(BatcherGuardError::NotATransaction("block")),
            Payload::Delegation { .. } => return Err(BatcherGuardError::NotATransaction("delegation")),
            Payload::PreconfBatch { .. } => return Err(BatcherGuardError::NotATransaction("preconfirmation")),
            Payload::HyperlaneCheckpoint { .. } | Payload::HyperlaneAnnouncement { .. } => {
                return Err(BatcherGuardError::NotATransaction("Hyperlane checkpoint or announcement"));
            }
        };
        let fields = tx.as_transaction();
        if fields.chain_id() != Some(self.l1_chain_id) {
            return Err(BatcherGuardError::ChainId(fields.chain_id(), self.l1_chain_id));
        }
        if fields.to() != Some(self.batch_inbox) {
            return Err(BatcherGuardError::NotTheInbox(fields.to(), self.batch_inbox));
        }
        if !fields.value().is_zero() {
            return Err(BatcherGuardError::Value(fields.value()));
        }
        if fields.access_list().is_some_and(|list| !list.is_empty()) || fields.authorization_list().is_some() {
            return Err(BatcherGuardError::Extras);
        }
        let fee = fields.max_fee_per_gas();
        if fee > self.max_fee_per_gas_cap_wei {
            return Err(BatcherGuardError::FeeCap { fee, cap: self.max_fee_per_gas_cap_wei });
        }
        if let L1Tx::Eip4844(blob_tx) = tx
            && blob_tx.max_fee_per_blob_gas > self.max_fee_per_blob_gas_cap_wei
        {
            let (fee, cap) = (blob_tx.max_fee_per_blob_gas, self.max_fee_per_blob_gas_cap_wei);
            return Err(BatcherGuardError::BlobFeeCap { fee, cap });
        }
        Ok(())
    }
}

impl<S: Signer> Signer for BatcherGuard<S> {
    fn public_key(&self) -> secp256k1::PublicKey {
        self.inner.public_key()
    }

    fn address(&self) -> Address {
        self.inner.address()
    }

    fn sign(&self, payload: &Payload<'_>) -> Result<Signature65, SignError> {
        self.rules.admit(payload).map_err(|e| SignError::Key(e.to_string()))?;
        self.inner.sign(payload)
    }

    fn rewind(&self, _number: u64, _hash: B256) -> Result<(), SignError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use alloy_consensus::{SignableTransaction, TxEip1559, TxEip4844};
    use alloy_eips::eip2930::{AccessList, AccessListItem};
    use alloy_primitives::{Bytes, TxKind, address};

    use super::*;
    use crate::{FileSigner, recover};

    const INBOX: Address = address!("ff00000000000000000000000000000000000901");

    fn rules() -> BatcherRules {
        BatcherRules {
            l1_chain_id: 900,
            batch_inbox: INBOX,
            max_fee_per_gas_cap_wei: 500_000_000_000,
            max_fee_per_blob_gas_cap_wei: 100_000_000_000,
        }
    }

    fn calldata_tx() -> TxEip1559 {
        TxEip1559 {
            chain_id: 900,
            nonce: 7,
            gas_limit: 50_000,
            max_fee_per_gas: 3_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
            to: TxKind::Call(INBOX),
            input: Bytes::from_static(&[0, 1, 2]),
            ..Default::default()
        }
    }

    #[test]
    fn batcher_transactions_are_signed_and_recover_to_the_key() {
        let guard = BatcherGuard::new(FileSigner::random().unwrap(), rules());
        let tx = calldata_tx();
        let payload = Payload::L1Transaction(L1Tx::Eip1559(&tx));
        let signature = guard.sign(&payload).unwrap();
        assert_eq!(recover(&signature, tx.signature_hash()), Some(guard.address()));
        let blob_tx = TxEip4844 {
            chain_id: 900,
            to: INBOX,
            max_fee_per_blob_gas: 2,
            blob_versioned_hashes: vec![B256::repeat_byte(1)],
            ..Default::default()
        };
        guard.sign(&Payload::L1Transaction(L1Tx::Eip4844(&blob_tx))).unwrap();
        guard.sign(&Payload::SelfTest { challenge: B256::ZERO }).unwrap();
    }

    #[test]
    fn anything_but_a_bounded_transaction_to_the_inbox_is_refused() {
        let guard = BatcherGuard::new(FileSigner::random().unwrap(), rules());
        let refused = |tx: TxEip1559| guard.rules().admit(&Payload::L1Transaction(L1Tx::Eip1559(&tx))).unwrap_err();
        let elsewhere = TxEip1559 { to: TxKind::Call(Address::repeat_byte(1)), ..calldata_tx() };
        assert!(matches!(refused(elsewhere), BatcherGuardError::NotTheInbox(..)));
        let creation = TxEip1559 { to: TxKind::Create, ..calldata_tx() };
        assert!(matches!(refused(creation), BatcherGuardError::NotTheInbox(None, _)));
        assert!(matches!(refused(TxEip1559 { chain_id: 1, ..calldata_tx() }), BatcherGuardError::ChainId(..)));
        assert!(matches!(refused(TxEip1559 { value: U256::from(1), ..calldata_tx() }), BatcherGuardError::Value(_)));
        let listed = AccessList(vec![AccessListItem { address: INBOX, storage_keys: vec![] }]);
        assert!(matches!(refused(TxEip1559 { access_list: listed, ..calldata_tx() }), BatcherGuardError::Extras));
        let dear = TxEip1559 { max_fee_per_gas: 500_000_000_001, ..calldata_tx() };
        assert!(matches!(refused(dear), BatcherGuardError::FeeCap { .. }));
        let dear_blobs =
            TxEip4844 { chain_id: 900, to: INBOX, max_fee_per_blob_gas: 100_000_000_001, ..Default::default() };
        let error = guard.rules().admit(&Payload::L1Transaction(L1Tx::Eip4844(&dear_blobs))).unwrap_err();
        assert!(matches!(error, BatcherGuardError::BlobFeeCap { .. }));
        let block = Payload::SealedBlock { chain_id: 1, number: 1, block_hash: B256::ZERO, leader_epoch: 0 };
        assert!(guard.sign(&block).is_err(), "the batcher key never signs a block");
    }
}
