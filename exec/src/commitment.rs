//! The state's Merkle commitment: the account trie and each account's
//! storage trie, kept apart from the flat state that execution reads.
//!
//! ```text
//!  StateDb (flat: accounts, slots, code) ──take_diff──> StateDiff ──apply──> Commitment
//!                                                                           state_root()
//!                                                                           storage_root()
//! ```
//!
//! A `StateDb` holds its commitment and folds its changes in on
//! `state_root`, or hands it to a hasher thread (`StateDb::detach_commitment`)
//! and sends it a diff after each mini-block: the sequencer then never hashes
//! under the view's lock. Either way the roots are functions of the state
//! alone: when and how often diffs are taken changes no root.
//!
//! Invariant: a diff carries every account written since the one before,
//! with its current nonce, balance and code hash and the current value of
//! every slot written (zero: removed), or its removal; applied in order,
//! diffs leave the tries equal to a trie built from the flat state.

use alloy_primitives::{B256, U256, keccak256, map::B256Map};
use alloy_trie::{EMPTY_ROOT_HASH, TrieAccount};

use crate::trie::MerkleTrie;

/// One account's change since the previous diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountChange {
    /// keccak256 of the address: the account's key in the state trie.
    pub hashed_address: B256,
    /// `None`: the account is gone (with its storage).
    pub account: Option<AccountLeaf>,
}

/// What the state trie's leaf of an account is made from, and the slots
/// written since the previous diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountLeaf {
    pub nonce: u64,
    pub balance: U256,
    pub code_hash: B256,
    /// The account's storage started again from empty (created, or removed
    /// and made again) before `slots` were written.
    pub storage_reset: bool,
    /// Slot and its value now; zero is a removal.
    pub slots: Vec<(U256, U256)>,
}

/// The changes of the flat state since the previous diff, in no order: each
/// account appears at most once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateDiff {
    pub accounts: Vec<AccountChange>,
}

impl StateDiff {
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }
}

/// The account trie and the storage tries, by hashed address.
#[derive(Clone, Debug, Default)]
pub struct Commitment {
    account_trie: MerkleTrie,
    storage_tries: B256Map<MerkleTrie>,
    /// Accounts changed since the account trie last took them in: their leaf
    /// needs their storage root, which is hashed once, at the next root.
    pending: B256Map<(u64, U256, B256)>,
}

impl Commitment {
    /// Takes in a diff. Storage tries are updated at once; account leaves,
    /// which hold a storage root, wait for the next `state_root`.
    pub fn apply(&mut self, diff: StateDiff) {
        for change in diff.accounts {
            let key = change.hashed_address;
            let Some(leaf) = change.account else {
                self.pending.remove(&key);
                self.storage_tries.remove(&key);
                self.account_trie.remove(key);
                continue;
            };
            if leaf.storage_reset {
                self.storage_tries.remove(&key);
            }
            if !leaf.slots.is_empty() {
                let trie = self.storage_tries.entry(key).or_default();
                for (slot, value) in leaf.slots {
                    let slot_key = keccak256(slot.to_be_bytes::<32>());
                    if value.is_zero() {
                        trie.remove(slot_key);
                    } else {
                        trie.insert(slot_key, alloy_rlp::encode(value));
                    }
                }
            }
            self.pending.insert(key, (leaf.nonce, leaf.balance, leaf.code_hash));
        }
    }

    /// The root of the account trie. Rehashes only what changed since the
    /// previous call.
    pub fn state_root(&mut self) -> B256 {
        for (key, (nonce, balance, code_hash)) in std::mem::take(&mut self.pending) {
            let storage_root = self.storage_root(&key);
            let leaf = TrieAccount { nonce, balance, storage_root, code_hash };
            self.account_trie.insert(key, alloy_rlp::encode(leaf));
        }
        self.account_trie.root()
    }

    /// The root of one account's storage trie (empty for none).
    pub fn storage_root(&mut self, hashed_address: &B256) -> B256 {
        self.storage_tries.get_mut(hashed_address).map_or(EMPTY_ROOT_HASH, MerkleTrie::root)
    }
}
