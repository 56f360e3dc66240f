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
/// (`StateDb::take_block_changes`). Sorted by address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockChanges {
    /// Each account the block wrote; `None`: it did not exist.
    pub accounts: Vec<(Address, Option<AccountBefore>)>,
    pub storage: Vec<(Address, StorageBeforeBlock)>,
}

impl BlockChanges {
    /// `address` before the block, if the block wrote it (`Some(None)`: it
    /// did not exist). The state at block N is read back by asking the
    /// blocks after N in order: the first that wrote a key has its value.
    pub fn account(&self, address: &Address) -> Option<Option<AccountBefore>> {
        let at = self.accounts.binary_search_by_key(address, |(a, _)| *a).ok()?;
        Some(self.accounts[at].1)
    }

    /// `slot` of `address` before the block, if the block wrote it, or
    /// wiped the storage, or made the account.
    pub fn slot(&self, address: &Address, slot: U256) -> Option<U256> {
        if let Ok(at) = self.storage.binary_search_by_key(address, |(a, _)| *a) {
            let before = &self.storage[at].1;
            if let Ok(i) = before.slots.binary_search_by_key(&slot, |(s, _)| *s) {
                return Some(before.slots[i].1);
            }
            if before.wiped {
                return Some(U256::ZERO);
            }
        }
        // Made in the block: it had no storage.
        matches!(self.account(address), Some(None)).then_some(U256::ZERO)
    }
}

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

    /// Moves what was kept into `out` (as a block's reverse changes) and
    /// stops keeping.
    pub(crate) fn drain_into(&mut self, out: &mut BlockChanges) {
        self.keeping = false;
        out.accounts.extend(self.accounts.drain().map(|(address, before)| (address, before.map(AccountBefore::from))));
        out.storage.extend(self.storage.drain().map(|(address, before)| {
            let mut slots: Vec<(U256, U256)> = before.slots.into_iter().collect();
            slots.sort_unstable();
            (address, StorageBeforeBlock { wiped: before.whole, slots })
        }));
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
