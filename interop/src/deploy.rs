//! `tephra interop deploy`: Hyperlane's core contracts on one chain, from the
//! pinned package's code, in the only order their constructors allow (a
//! hook and the announcer read the Mailbox's domain; `initialize` wants its
//! ISM and hooks to be contracts already):
//!
//! ```text
//! Mailbox(domain) ─> MerkleTreeHook(mailbox) ─> PausableHook()
//!   ─> StaticMessageIdMultisigIsmFactory() ─> getAddress + deploy(validators, threshold) = ISM
//!   ─> Mailbox.initialize(owner, ISM, default hook = PausableHook, required hook = MerkleTreeHook)
//!   ─> ValidatorAnnounce(mailbox) ─> TestRecipient()
//! ```
//!
//! The MerkleTreeHook is the *required* hook, so every dispatched message
//! enters the tree validators sign whatever hook its sender names. The
//! validators are passed to the factory in ascending address order (one
//! canonical order: the ISM's address depends on it); relayers read the
//! order back from the ISM.

use alloy_primitives::{Address, Bytes};
use alloy_sol_types::{SolCall, SolValue};
use serde::{Deserialize, Serialize};

use crate::{
    chain::{ChainRpc, view},
    contracts::{Contract, IMailbox, IStaticMessageIdMultisigIsmFactory},
    transactor::{SendError, Transactor},
};

/// The most validators an ISM is deployed with: the ISM checks `threshold`
/// signatures one by one, and each costs the relayer a file to fetch.
pub const VALIDATORS_MAX: usize = 32;

/// Where the contracts are on one chain: what `deploy` writes, and what the
/// validator and relayer are configured with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub domain: u32,
    pub chain_id: u64,
    /// The first block to read the Mailbox's and hook's events from.
    pub deployed_block: u64,
    pub mailbox: Address,
    pub merkle_tree_hook: Address,
    pub pausable_hook: Address,
    pub ism_factory: Address,
    pub ism: Address,
    pub validator_announce: Address,
    pub test_recipient: Address,
    /// The ISM's validators, in its order, and how many must sign.
    pub validators: Vec<Address>,
    pub threshold: u8,
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(
        "threshold {threshold} of {validators} validators: it must be 1 to {VALIDATORS_MAX} and at most their number"
    )]
    BadValidatorSet { threshold: u8, validators: usize },
    #[error("validator {0} is named twice")]
    DuplicateValidator(Address),
    #[error("{step}: {source}")]
    Step { step: &'static str, source: SendError },
    #[error("{step}: the receipt names no new contract")]
    NoContract { step: &'static str },
    #[error("the ISM is not at {ism} after the factory's deploy")]
    IsmMissing { ism: Address },
    #[error("chain: {0}")]
    Rpc(#[from] tephra_l1::L1Error),
}

/// The ISM's validator order: ascending addresses, no repeats.
pub fn canonical_validators(validators: &[Address], threshold: u8) -> Result<Vec<Address>, DeployError> {
    let mut sorted = validators.to_vec();
    sorted.sort();
    if let Some(pair) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(DeployError::DuplicateValidator(pair[0]));
    }
    if threshold == 0 || usize::from(threshold) > sorted.len() || sorted.len() > VALIDATORS_MAX {
        return Err(DeployError::BadValidatorSet { threshold, validators: sorted.len() });
    }
    Ok(sorted)
}

/// Deploys the contracts for `domain`, owned by the transactor's key.
pub fn deploy(
    transactor: &Transactor<'_>,
    domain: u32,
    validators: &[Address],
    threshold: u8,
) -> Result<Deployment, DeployError> {
    let validators = canonical_validators(validators, threshold)?;
    let chain: &dyn ChainRpc = transactor.chain;
    let create = |step: &'static str, contract: Contract, arguments: Vec<u8>| {
        let code = [contract.creation_code().as_ref(), &arguments].concat();
        let receipt = transactor.send(None, code.into()).map_err(|source| DeployError::Step { step, source })?;
        let address = receipt.contract_address.ok_or(DeployError::NoContract { step })?;
        Ok::<_, DeployError>((address, receipt.block_number))
    };
    let (mailbox, deployed_block) = create("Mailbox", Contract::Mailbox, domain.abi_encode())?;
    let (merkle_tree_hook, _) = create("MerkleTreeHook", Contract::MerkleTreeHook, mailbox.abi_encode())?;
    let (pausable_hook, _) = create("PausableHook", Contract::PausableHook, Vec::new())?;
    let (ism_factory, _) = create("ISM factory", Contract::StaticMessageIdMultisigIsmFactory, Vec::new())?;

    let address_call =
        IStaticMessageIdMultisigIsmFactory::getAddressCall { _values: validators.clone(), _threshold: threshold };
    let ism = view(chain, ism_factory, &address_call)?;
    let deploy_call =
        IStaticMessageIdMultisigIsmFactory::deployCall { _values: validators.clone(), _threshold: threshold };
    send(transactor, "ISM", ism_factory, deploy_call.abi_encode())?;
    if chain.code(ism)?.is_empty() {
        return Err(DeployError::IsmMissing { ism });
    }

    let owner = transactor.address();
    let initialize = IMailbox::initializeCall {
        _owner: owner,
        _defaultIsm: ism,
        _defaultHook: pausable_hook,
        _requiredHook: merkle_tree_hook,
    };
    send(transactor, "Mailbox.initialize", mailbox, initialize.abi_encode())?;
    let (validator_announce, _) = create("ValidatorAnnounce", Contract::ValidatorAnnounce, mailbox.abi_encode())?;
    let (test_recipient, _) = create("TestRecipient", Contract::TestRecipient, Vec::new())?;
    Ok(Deployment {
        domain,
        chain_id: transactor.chain_id,
        deployed_block,
        mailbox,
        merkle_tree_hook,
        pausable_hook,
        ism_factory,
        ism,
        validator_announce,
        test_recipient,
        validators,
        threshold,
    })
}

fn send(transactor: &Transactor<'_>, step: &'static str, to: Address, call: Vec<u8>) -> Result<(), DeployError> {
    transactor.send(Some(to), Bytes::from(call)).map(drop).map_err(|source| DeployError::Step { step, source })
}

#[cfg(test)]
mod tests {
    use alloy_primitives::address;

    use super::*;

    #[test]
    fn validators_are_sorted_once_each_and_the_threshold_fits() {
        let (a, b) = (
            address!("00000000000000000000000000000000000000aa"),
            address!("00000000000000000000000000000000000000bb"),
        );
        assert_eq!(canonical_validators(&[b, a], 2).unwrap(), vec![a, b]);
        assert!(matches!(canonical_validators(&[a, a], 1), Err(DeployError::DuplicateValidator(_))));
        assert!(matches!(canonical_validators(&[a, b], 3), Err(DeployError::BadValidatorSet { .. })));
        assert!(matches!(canonical_validators(&[a], 0), Err(DeployError::BadValidatorSet { .. })));
        assert!(matches!(canonical_validators(&[], 1), Err(DeployError::BadValidatorSet { .. })));
    }
}
