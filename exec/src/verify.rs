//! verify: decode an EIP-2718 envelope, check what can be checked without state,
//! and recover the sender with libsecp256k1.
//!
//! Recovery is the most expensive step a transaction takes (about 48 us against
//! 2.5 us to execute a transfer), so it happens once, here, for the transaction
//! and for every EIP-7702 authorization it carries; execution never recovers.

use alloy_consensus::{Transaction, TxEnvelope};
use alloy_eips::{
    eip2718::Decodable2718,
    eip7702::{RecoveredAuthority, RecoveredAuthorization},
};
use alloy_primitives::{Address, B256, Bytes, Signature, U256};
use revm::{context_interface::cfg::GasParams, primitives::hardfork::SpecId};
use tephra_types::{
    Reject, RejectCode,
    crypto::recover_address,
    limits::{INITCODE_SIZE_MAX_BYTES, TX_GAS_LIMIT_CAP, TX_SIZE_MAX_BYTES},
};

/// Half the secp256k1 group order: EIP-2 refuses signatures with a larger `s`.
const SECP256K1N_HALF: U256 = U256::from_be_bytes([
    0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x5D, 0x57, 0x6E,
    0x73, 0x57, 0xA4, 0x50, 0x1D, 0xDF, 0xE9, 0x2F, 0x46, 0x68, 0x1B, 0x20, 0xA0,
]);

/// A transaction that passed every stateless check, with its sender recovered.
#[derive(Clone, Debug)]
pub struct VerifiedTx {
    pub envelope: TxEnvelope,
    pub sender: Address,
    pub hash: B256,
    /// The EIP-2718 encoding as received: what the transactions root and the
    /// batch log commit to.
    pub encoded: Bytes,
    /// EIP-7702 authorities recovered here so execution never recovers.
    pub authorizations: Vec<RecoveredAuthorization>,
    /// On an OP Stack chain: Fjord's FastLZ-estimated size of `encoded`,
    /// which the L1 data fee is charged on. Estimated here, on the verify
    /// cores, so that the sequencer's core does not compress.
    pub l1_estimated_size: Option<u64>,
}

impl VerifiedTx {
    pub fn nonce(&self) -> u64 {
        self.envelope.nonce()
    }

    pub fn gas_limit(&self) -> u64 {
        self.envelope.gas_limit()
    }

    pub fn max_fee_per_gas(&self) -> u128 {
        self.envelope.max_fee_per_gas()
    }

    pub fn max_priority_fee_per_gas(&self) -> u128 {
        self.envelope.max_priority_fee_per_gas().unwrap_or(self.envelope.max_fee_per_gas())
    }
}

/// The stateless rules a transaction is checked against. The base fee and gas
/// limit move with the open block: the caller refreshes them per block.
#[derive(Clone, Debug)]
pub struct VerifyRules {
    pub chain_id: u64,
    pub spec: SpecId,
    pub block_gas_limit: u64,
    pub base_fee_per_gas: u64,
    /// Accept legacy transactions without EIP-155 replay protection.
    pub allow_unprotected: bool,
}

/// The verify stage: owns the gas tables for the current spec so that the hot
/// path does not rebuild them.
#[derive(Clone, Debug)]
pub struct Verifier {
    rules: VerifyRules,
    gas_params: GasParams,
    /// An OP Stack chain's: estimate each transaction's L1 data size.
    estimates_l1_data: bool,
}

impl Verifier {
    pub fn new(rules: VerifyRules) -> Self {
        let gas_params = GasParams::new_spec(rules.spec);
        Self { rules, gas_params, estimates_l1_data: false }
    }

    /// For an OP Stack chain: every verified transaction carries its
    /// L1 data size estimate (`VerifiedTx::l1_estimated_size`).
    pub fn estimating_l1_data(mut self, on: bool) -> Self {
        self.estimates_l1_data = on;
        self
    }

    pub fn rules(&self) -> &VerifyRules {
        &self.rules
    }

    /// Moves to the next block's spec, gas limit and base fee.
    pub fn set_block(&mut self, spec: SpecId, block_gas_limit: u64, base_fee_per_gas: u64) {
        if spec != self.rules.spec {
            self.gas_params = GasParams::new_spec(spec);
            self.rules.spec = spec;
        }
        self.rules.block_gas_limit = block_gas_limit;
        self.rules.base_fee_per_gas = base_fee_per_gas;
    }

    /// Decodes and checks one raw EIP-2718 transaction.
    pub fn verify(&self, raw: &[u8]) -> Result<VerifiedTx, Reject> {
        if raw.len() > TX_SIZE_MAX_BYTES {
            return Err(Reject::new(
                RejectCode::Oversized,
                format!("{} bytes, at most {TX_SIZE_MAX_BYTES}", raw.len()),
            ));
        }
        let envelope = decode(raw)?;
        self.check_stateless(&envelope)?;
        let sender = recover_signer(envelope.signature(), envelope.signature_hash())
            .ok_or_else(|| Reject::new(RejectCode::InvalidSignature, "signature does not recover"))?;
        let authorizations = recover_authorizations(&envelope);
        Ok(VerifiedTx {
            hash: *envelope.tx_hash(),
            sender,
            envelope,
            encoded: Bytes::copy_from_slice(raw),
            authorizations,
            l1_estimated_size: self.estimates_l1_data.then(|| crate::op_fees::estimate_l1_size(raw)),
        })
    }

    fn check_stateless(&self, tx: &TxEnvelope) -> Result<(), Reject> {
        let rules = &self.rules;
        match tx.chain_id() {
            Some(id) if id != rules.chain_id => {
                return Err(Reject::new(
                    RejectCode::WrongChainId,
                    format!("signed for chain {id}, this chain is {}", rules.chain_id),
                ));
            }
            None if !rules.allow_unprotected => {
                return Err(Reject::new(RejectCode::Unprotected, "legacy transaction without EIP-155 chain id"));
            }
            _ => {}
        }
        let gas_limit = tx.gas_limit();
        if gas_limit > rules.block_gas_limit {
            return Err(Reject::new(
                RejectCode::GasLimitAboveBlock,
                format!("gas limit {gas_limit} above block gas limit {}", rules.block_gas_limit),
            ));
        }
        if rules.spec.is_enabled_in(SpecId::OSAKA) && gas_limit > TX_GAS_LIMIT_CAP {
            return Err(Reject::new(
                RejectCode::GasLimitAboveCap,
                format!("gas limit {gas_limit} above the EIP-7825 cap {TX_GAS_LIMIT_CAP}"),
            ));
        }
        let max_fee = tx.max_fee_per_gas();
        if let Some(tip) = tx.max_priority_fee_per_gas()
            && tip > max_fee
        {
            return Err(Reject::new(
                RejectCode::TipAboveFeeCap,
                format!("max priority fee {tip} above max fee {max_fee}"),
            ));
        }
        if rules.spec.is_enabled_in(SpecId::LONDON) && max_fee < u128::from(rules.base_fee_per_gas) {
            return Err(Reject::new(
                RejectCode::FeeCapBelowBaseFee,
                format!("max fee per gas {max_fee} below base fee {}", rules.base_fee_per_gas),
            ));
        }
        let is_create = tx.is_create();
        if is_create && rules.spec.is_enabled_in(SpecId::SHANGHAI) && tx.input().len() > INITCODE_SIZE_MAX_BYTES {
            return Err(Reject::new(
                RejectCode::InitCodeTooLarge,
                format!("{} bytes of init code, at most {INITCODE_SIZE_MAX_BYTES}", tx.input().len()),
            ));
        }
        if let Some(auths) = tx.authorization_list()
            && (auths.is_empty() || is_create)
        {
            return Err(Reject::new(
                RejectCode::InvalidAuthorizationList,
                "an EIP-7702 transaction needs a recipient and at least one authorization",
            ));
        }
        let (access_accounts, access_slots) = tx.access_list().map_or((0, 0), |list| {
            let slots: usize = list.iter().map(|item| item.storage_keys.len()).sum();
            (list.len() as u64, slots as u64)
        });
        let auth_count = tx.authorization_list().map_or(0, |list| list.len() as u64);
        let gas = self.gas_params.initial_tx_gas(tx.input(), is_create, access_accounts, access_slots, auth_count);
        let intrinsic = gas.initial_total_gas.max(gas.floor_gas);
        if gas_limit < intrinsic {
            return Err(Reject::new(
                RejectCode::IntrinsicGasTooLow,
                format!("gas limit {gas_limit} below intrinsic gas {intrinsic}"),
            ));
        }
        Ok(())
    }
}

/// Decodes exactly one EIP-2718 envelope, refusing blob transactions.
pub fn decode(raw: &[u8]) -> Result<TxEnvelope, Reject> {
    if raw.is_empty() {
        return Err(Reject::new(RejectCode::Malformed, "empty transaction"));
    }
    // EIP-2718: a first byte up to 0x7f is a type; the known ones are 1 to 4.
    if raw[0] <= 0x7f && !(1..=4).contains(&raw[0]) {
        return Err(Reject::new(RejectCode::UnsupportedType, format!("envelope type {:#04x}", raw[0])));
    }
    let envelope =
        TxEnvelope::decode_2718_exact(raw).map_err(|err| Reject::new(RejectCode::Malformed, err.to_string()))?;
    if envelope.is_eip4844() {
        return Err(Reject::new(RejectCode::BlobUnsupported, "EIP-4844 blob transaction"));
    }
    Ok(envelope)
}

/// Recovers the signer of `hash` with libsecp256k1; `None` for an invalid or
/// high-s (EIP-2) signature.
pub fn recover_signer(signature: &Signature, hash: B256) -> Option<Address> {
    if signature.s() > SECP256K1N_HALF {
        return None;
    }
    let mut compact = [0u8; 64];
    compact[..32].copy_from_slice(&signature.r().to_be_bytes::<32>());
    compact[32..].copy_from_slice(&signature.s().to_be_bytes::<32>());
    recover_address(hash, &compact, u8::from(signature.v()))
}

/// EIP-7702: an authorization whose signature does not recover is skipped at
/// execution, not a reason to refuse the transaction.
fn recover_authorizations(tx: &TxEnvelope) -> Vec<RecoveredAuthorization> {
    let Some(list) = tx.authorization_list() else { return Vec::new() };
    list.iter()
        .map(|signed| {
            let authority = signed
                .signature()
                .ok()
                .and_then(|sig| recover_signer(&sig, signed.signature_hash()))
                .map_or(RecoveredAuthority::Invalid, RecoveredAuthority::Valid);
            RecoveredAuthorization::new_unchecked(signed.inner().clone(), authority)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use alloy_consensus::{
        SignableTransaction, TxEip1559, TxEip2930, TxEip4844, TxEip4844Variant, TxEip7702, TxLegacy, Typed2718,
        TypedTransaction,
    };
    use alloy_eips::{eip2718::Encodable2718, eip2930::AccessList, eip7702::Authorization};
    use alloy_primitives::{TxKind, address};
    use proptest::prelude::*;

    use super::*;
    use crate::dev::DevKey;

    const CHAIN_ID: u64 = 31337;
    const GWEI: u128 = 1_000_000_000;
    const GWEI_U64: u64 = 1_000_000_000;

    fn verifier() -> Verifier {
        Verifier::new(VerifyRules {
            chain_id: CHAIN_ID,
            spec: SpecId::OSAKA,
            block_gas_limit: 30_000_000,
            base_fee_per_gas: GWEI_U64,
            allow_unprotected: false,
        })
    }

    fn eip1559(gas_limit: u64, max_fee: u128, tip: u128, input: Vec<u8>, to: TxKind) -> TypedTransaction {
        TypedTransaction::Eip1559(TxEip1559 {
            chain_id: CHAIN_ID,
            nonce: 0,
            gas_limit,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: tip,
            to,
            value: U256::from(1),
            access_list: AccessList::default(),
            input: input.into(),
        })
    }

    fn to() -> TxKind {
        TxKind::Call(address!("0x00000000000000000000000000000000000000aa"))
    }

    fn raw(tx: TypedTransaction) -> Vec<u8> {
        DevKey::dev(1).sign(tx).encoded_2718()
    }

    fn code_of(raw: &[u8]) -> RejectCode {
        verifier().verify(raw).expect_err("must be rejected").code
    }

    #[test]
    fn every_supported_type_decodes_and_recovers_the_sender() {
        let key = DevKey::dev(1);
        let legacy = |chain_id| {
            TypedTransaction::Legacy(TxLegacy {
                chain_id,
                gas_limit: 21_000,
                gas_price: 2 * GWEI,
                to: to(),
                ..Default::default()
            })
        };
        let txs = [
            legacy(Some(CHAIN_ID)),
            TypedTransaction::Eip2930(TxEip2930 {
                chain_id: CHAIN_ID,
                gas_limit: 21_000,
                gas_price: 2 * GWEI,
                to: to(),
                ..Default::default()
            }),
            eip1559(21_000, 2 * GWEI, GWEI, vec![], to()),
            TypedTransaction::Eip7702(TxEip7702 {
                chain_id: CHAIN_ID,
                gas_limit: 100_000,
                max_fee_per_gas: 2 * GWEI,
                to: address!("0x00000000000000000000000000000000000000aa"),
                authorization_list: vec![{
                    let auth =
                        Authorization { chain_id: U256::from(CHAIN_ID), address: Address::repeat_byte(7), nonce: 0 };
                    let sig = DevKey::dev(2).sign_hash(auth.signature_hash());
                    auth.into_signed(sig)
                }],
                ..Default::default()
            }),
        ];
        for tx in txs {
            let ty = tx.ty();
            let verified = verifier().verify(&key.sign(tx).encoded_2718()).unwrap_or_else(|e| panic!("type {ty}: {e}"));
            assert_eq!(verified.sender, key.address(), "type {ty}");
            for auth in &verified.authorizations {
                assert_eq!(auth.authority(), Some(DevKey::dev(2).address()));
            }
        }
        // Pre-EIP-155 legacy: refused by default, accepted when allowed.
        let unprotected = key.sign(legacy(None)).encoded_2718();
        assert_eq!(code_of(&unprotected), RejectCode::Unprotected);
        let mut rules = verifier().rules().clone();
        rules.allow_unprotected = true;
        assert_eq!(Verifier::new(rules).verify(&unprotected).unwrap().sender, key.address());
    }

    #[test]
    fn blob_transactions_are_refused_with_their_own_code() {
        let blob = TypedTransaction::Eip4844(TxEip4844Variant::TxEip4844(TxEip4844 {
            chain_id: CHAIN_ID,
            gas_limit: 21_000,
            max_fee_per_gas: 2 * GWEI,
            blob_versioned_hashes: vec![B256::repeat_byte(1)],
            max_fee_per_blob_gas: 1,
            ..Default::default()
        }));
        assert_eq!(code_of(&raw(blob)), RejectCode::BlobUnsupported);
    }

    #[test]
    fn stateless_rules_each_have_their_code() {
        let wrong_chain = TypedTransaction::Eip1559(TxEip1559 {
            chain_id: 1,
            gas_limit: 21_000,
            max_fee_per_gas: 2 * GWEI,
            to: to(),
            ..Default::default()
        });
        assert_eq!(code_of(&raw(wrong_chain)), RejectCode::WrongChainId);
        assert_eq!(code_of(&raw(eip1559(20_999, 2 * GWEI, 0, vec![], to()))), RejectCode::IntrinsicGasTooLow);
        // Calldata raises the intrinsic gas: 16 per non-zero byte, or the EIP-7623 floor.
        assert_eq!(code_of(&raw(eip1559(21_000, 2 * GWEI, 0, vec![1; 10], to()))), RejectCode::IntrinsicGasTooLow);
        assert!(verifier().verify(&raw(eip1559(21_000 + 400, 2 * GWEI, 0, vec![1; 10], to()))).is_ok());
        assert_eq!(code_of(&raw(eip1559(30_000_001, 2 * GWEI, 0, vec![], to()))), RejectCode::GasLimitAboveBlock);
        assert_eq!(
            code_of(&raw(eip1559(TX_GAS_LIMIT_CAP + 1, 2 * GWEI, 0, vec![], to()))),
            RejectCode::GasLimitAboveCap
        );
        assert_eq!(code_of(&raw(eip1559(21_000, GWEI - 1, 0, vec![], to()))), RejectCode::FeeCapBelowBaseFee);
        assert_eq!(code_of(&raw(eip1559(21_000, 2 * GWEI, 3 * GWEI, vec![], to()))), RejectCode::TipAboveFeeCap);
        let big_init = eip1559(10_000_000, 2 * GWEI, 0, vec![0; INITCODE_SIZE_MAX_BYTES + 1], TxKind::Create);
        assert_eq!(code_of(&raw(big_init)), RejectCode::InitCodeTooLarge);
        let no_auth = TypedTransaction::Eip7702(TxEip7702 {
            chain_id: CHAIN_ID,
            gas_limit: 100_000,
            max_fee_per_gas: 2 * GWEI,
            ..Default::default()
        });
        assert_eq!(code_of(&raw(no_auth)), RejectCode::InvalidAuthorizationList);
        assert_eq!(code_of(&vec![0u8; TX_SIZE_MAX_BYTES + 1]), RejectCode::Oversized);
    }

    #[test]
    fn malformed_bytes_are_refused_not_panicked_on() {
        assert_eq!(code_of(&[]), RejectCode::Malformed);
        assert_eq!(code_of(&[0x05, 0xc0]), RejectCode::UnsupportedType);
        let mut good = raw(eip1559(21_000, 2 * GWEI, 0, vec![], to()));
        good.push(0);
        assert_eq!(code_of(&good), RejectCode::Malformed, "trailing bytes");
        good.truncate(good.len() - 5);
        assert_eq!(code_of(&good), RejectCode::Malformed, "truncated");
    }

    #[test]
    fn high_s_signatures_are_refused() {
        let tx = eip1559(21_000, 2 * GWEI, 0, vec![], to());
        let hash = tx.signature_hash();
        let sig = DevKey::dev(1).sign_hash(hash);
        const N: U256 = U256::from_be_bytes([
            0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE, 0xBA, 0xAE,
            0xDC, 0xE6, 0xAF, 0x48, 0xA0, 0x3B, 0xBF, 0xD2, 0x5E, 0x8C, 0xD0, 0x36, 0x41, 0x41,
        ]);
        let high = Signature::new(sig.r(), N - sig.s(), !sig.v());
        assert_eq!(recover_signer(&sig, hash), Some(DevKey::dev(1).address()));
        assert_eq!(recover_signer(&high, hash), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        /// Arbitrary bytes never panic the decoder and always get a code.
        #[test]
        fn arbitrary_bytes_get_a_code(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Err(reject) = verifier().verify(&bytes) {
                prop_assert!(RejectCode::from_u16(reject.code.as_u16()).is_some());
            }
        }

        /// Flipping any byte of a valid transaction is refused or recovers to
        /// some sender; it never panics.
        #[test]
        fn mutated_transactions_never_panic(index in 0usize..200, byte in any::<u8>()) {
            let mut bytes = raw(eip1559(50_000, 2 * GWEI, GWEI, vec![1, 2, 3], to()));
            let i = index % bytes.len();
            bytes[i] = byte;
            let _ = verifier().verify(&bytes);
        }
    }
}
