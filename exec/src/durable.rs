//! Reads of the durable state while a mini-block is executed but not yet
//! durable. The sequencer makes a mini-block durable (its fsync) with the
//! view's lock released, so that reads do not wait for the disk; the
//! accounts and slots the mini-block wrote are then read as they were
//! before it, from the old values its writes kept.
//!
//! ```text
//!  sequencer: keep_pre_images ─> execute (each write keeps the old value; the first write wins)
//!             ─> unlock ─> fsync ─> lock: release_pre_images, publish
//!  readers:   state.durable() ─> the kept old value if there is one, else the state
//! ```
//!
//! Invariant: between `keep_pre_images` and `release_pre_images`, every read
//! through `durable()` equals the same read of the state as it was at
//! `keep_pre_images` (tested against a copy taken then). This file keeps the
//! old values; `state::DurableState` reads through them.

use alloy_primitives::{Address, B256, U256, map::AddressMap, map::U256Map};

use crate::state::{STATE_PARTITIONS, partition_of};
use revm::state::AccountInfo;

/// An account's fields as the state trie and revm see them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AccountFields {
    pub(crate) nonce: u64,
    pub(crate) balance: U256,
    pub(crate) code_hash: B256,
}

impl AccountFields {
    /// As revm loads an account: its code is loaded by hash when it runs
    /// (most loads only move value: fee vaults, senders, recipients).
    pub(crate) fn info(self) -> AccountInfo {
        // Every field named: `AccountInfo::default()` clones a process-wide
        // static, whose reference count all threads would share.
        AccountInfo {
            balance: self.balance,
            nonce: self.nonce,
            code_hash: self.code_hash,
            code: None,
            account_id: None,
        }
    }
}

/// An account as it was before a block wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountBefore {
    pub nonce: u64,
    pub balance: U256,
    pub code_hash: B256,
}

impl From<AccountFields> for AccountBefore {
    fn from(fields: AccountFields) -> Self {
        Self { nonce: fields.nonce, balance: fields.balance, code_hash: fields.code_hash }
    }
}

impl From<AccountBefore> for AccountFields {
    fn from(before: AccountBefore) -> Self {
        Self { nonce: before.nonce, balance: before.balance, code_hash: before.code_hash }
    }
}

/// An account's storage as it was before a block wrote it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StorageBeforeBlock {
    /// The block cleared, replaced or removed the whole storage: `slots` are
    /// then every non-zero slot it had, and any other was zero.
    pub wiped: bool,
    /// Each slot's old value (zero included), by slot.
    pub slots: Vec<(U256, U256)>,
}

/// What one block overwrote, each key as it was before the block: its
/// reverse changes, from which the state at any earlier block is read back
/// (`StateDb::take_block_changes`). Held as the state's partitions kept
/// them, so that taking them at a seal moves maps and copies nothing; put in
/// order (`sorted`) only off the sequencer's thread, where they are stored.
#[derive(Clone, Debug, Default)]
pub struct BlockChanges {
    /// One per state partition (`partition_of`).
    parts: Vec<PreImages>,
}

impl BlockChanges {
    pub(crate) fn from_partitions(parts: Vec<PreImages>) -> Self {
        debug_assert_eq!(parts.len(), STATE_PARTITIONS);
        Self { parts }
    }

    /// Changes as listed (a stored record read back).
    pub fn from_parts(
        accounts: Vec<(Address, Option<AccountBefore>)>,
        storage: Vec<(Address, StorageBeforeBlock)>,
    ) -> Self {
        let mut parts = vec![PreImages::default(); STATE_PARTITIONS];
        for (address, before) in accounts {
            parts[partition_of(&address)].accounts.insert(address, before.map(AccountFields::from));
        }
        for (address, before) in storage {
            let slots = before.slots.into_iter().collect();
            parts[partition_of(&address)].storage.insert(address, StorageBefore { whole: before.wiped, slots });
        }
        Self { parts }
    }

    fn part(&self, address: &Address) -> Option<&PreImages> {
        self.parts.get(partition_of(address))
    }

    /// `address` before the block, if the block wrote it (`Some(None)`: it
    /// did not exist). The state at block N is read back by asking the
    /// blocks after N in order: the first that wrote a key has its value.
    pub fn account(&self, address: &Address) -> Option<Option<AccountBefore>> {
        match self.part(address)?.account_before(address) {
            Before::Was(before) => Some(before.map(AccountBefore::from)),
            Before::Unwritten => None,
        }
    }

    /// `slot` of `address` before the block, if the block wrote it, or
    /// wiped the storage, or made the account.
    pub fn slot(&self, address: &Address, slot: U256) -> Option<U256> {
        match self.part(address)?.slot_before(address, slot) {
            Before::Was(value) => Some(value),
            Before::Unwritten => None,
        }
    }

    /// Whether the block wrote `address`: its account or its storage.
    pub fn wrote(&self, address: &Address) -> bool {
        self.part(address).is_some_and(|part| part.accounts.contains_key(address) || part.storage.contains_key(address))
    }

    /// Every account and storage written, each sorted by address (slots by
    /// slot): the record's order.
    pub fn sorted(&self) -> SortedChanges {
        let mut accounts: Vec<_> = self
            .parts
            .iter()
            .flat_map(|part| part.accounts.iter().map(|(address, before)| (*address, before.map(AccountBefore::from))))
            .collect();
        accounts.sort_unstable_by_key(|(address, _)| *address);
        let mut storage: Vec<_> = self
            .parts
            .iter()
            .flat_map(|part| part.storage.iter())
            .map(|(address, before)| {
                let mut slots: Vec<(U256, U256)> = before.slots.iter().map(|(s, v)| (*s, *v)).collect();
                slots.sort_unstable();
                (*address, StorageBeforeBlock { wiped: before.whole, slots })
            })
            .collect();
        storage.sort_unstable_by_key(|(address, _)| *address);
        SortedChanges { accounts, storage }
    }
}

/// A block's changes in order (`BlockChanges::sorted`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortedChanges {
    /// Each account written; `None`: it did not exist.
    pub accounts: Vec<(Address, Option<AccountBefore>)>,
    pub storage: Vec<(Address, StorageBeforeBlock)>,
}

impl PartialEq for BlockChanges {
    fn eq(&self, other: &Self) -> bool {
        self.sorted() == other.sorted()
    }
}

impl Eq for BlockChanges {}

/// What a read of one key finds among the kept old values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Before<T> {
    /// Not written in the window: read the state.
    Unwritten,
    /// Its value before the window.
    Was(T),
}

/// One account's storage as it was: the old value of each slot written, or
/// the whole old storage when it was cleared, replaced or removed.
#[derive(Clone, Debug, Default)]
struct StorageBefore {
    whole: bool,
    /// With `whole`, the non-zero slots; without, each written slot's old
    /// value (zero included).
    slots: U256Map<U256>,
}

/// The old values a partition's writes keep while a mini-block is not yet
/// durable. Empty and not keeping outside that window.
#[derive(Clone, Debug, Default)]
pub(crate) struct PreImages {
    keeping: bool,
    /// Each account written, as it was: `None` when it did not exist.
    accounts: AddressMap<Option<AccountFields>>,
    storage: AddressMap<StorageBefore>,
}

impl PreImages {
    pub(crate) fn keep(&mut self) {
        self.keeping = true;
    }

    pub(crate) fn keeping(&self) -> bool {
        self.keeping
    }

    /// The window is over: what was kept is dropped (its allocation stays).
    pub(crate) fn release(&mut self) {
        self.keeping = false;
        self.accounts.clear();
        self.storage.clear();
    }

    /// Before `address` (now `now`: none if absent) is written.
    pub(crate) fn account(&mut self, address: Address, now: impl FnOnce() -> Option<AccountFields>) {
        if self.keeping {
            self.accounts.entry(address).or_insert_with(now);
        }
    }

    /// Before `slot` of `address` (now `now`) is written.
    pub(crate) fn slot(&mut self, address: Address, slot: U256, now: impl FnOnce() -> U256) {
        if !self.keeping {
            return;
        }
        let before = self.storage.entry(address).or_default();
        if !before.whole {
            before.slots.entry(slot).or_insert_with(now);
        }
    }

    /// Before all of `address`'s storage (now `now`) is cleared, replaced or
    /// removed.
    pub(crate) fn whole_storage(&mut self, address: Address, now: Option<&U256Map<U256>>) {
        if !self.keeping {
            return;
        }
        let before = self.storage.entry(address).or_default();
        if before.whole {
            return;
        }
        // Slots written earlier in the window hold older values than `now`.
        let mut whole = now.cloned().unwrap_or_default();
        for (slot, value) in before.slots.drain() {
            if value.is_zero() {
                whole.remove(&slot);
            } else {
                whole.insert(slot, value);
            }
        }
        *before = StorageBefore { whole: true, slots: whole };
    }

    /// The account as it was, if written in the window (`None`: absent).
    pub(crate) fn account_before(&self, address: &Address) -> Before<Option<AccountFields>> {
        self.accounts.get(address).map_or(Before::Unwritten, |kept| Before::Was(*kept))
    }

    /// The slot as it was, if the window wrote it (or made, replaced or
    /// removed its account).
    pub(crate) fn slot_before(&self, address: &Address, slot: U256) -> Before<U256> {
        if let Some(None) = self.accounts.get(address) {
            // Made in the window: it had no storage.
            return Before::Was(U256::ZERO);
        }
        match self.storage.get(address) {
            Some(before) if before.whole => Before::Was(before.slots.get(&slot).copied().unwrap_or_default()),
            Some(before) => before.slots.get(&slot).map_or(Before::Unwritten, |value| Before::Was(*value)),
            None => Before::Unwritten,
        }
    }
}
