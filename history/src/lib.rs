//! tephra's state history: each sealed block's reverse changes (every
//! account and slot it wrote, as it was before the block; exec's
//! `BlockChanges`) in an embedded store, indexed so that the state at any
//! block N of the window is read back with one range lookup per key: the
//! first block after N that wrote the key holds its value at N; if none
//! did, the value is the current one.
//!
//! ```text
//! append(B, changes) ── one redb write transaction, durable when it returns ──┐
//!   accounts: address | block        -> before (empty: did not exist)         │
//!   slots:    address | slot | block -> before                                │
//!   wipes:    address | block        (storage cleared, replaced or removed)   │
//!   blocks:   block -> the record (codec.rs), to prune and truncate by        │
//!   meta:     first, last                                                     │
//! reader() ── a snapshot (MVCC): account_after(a, N), slot_after(a, s, N) <──┘
//! ```
//!
//! Invariants: the stored blocks are `first..=last`, without gaps; every
//! index entry belongs to a stored block's record; a block is appended only
//! as `last + 1` (or as the first into an empty store). A slot's value at N
//! is the first of its own entry and its account's wipe after N: the
//! entry's value if it is not later than the wipe, else zero (a wipe lists
//! every non-zero slot it removed, in the same block).

mod codec;

use std::path::{Path, PathBuf};

use alloy_primitives::{Address, U256};
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use tephra_exec::{AccountBefore, BlockChanges, SortedChanges};

const ACCOUNTS: TableDefinition<'static, &'static [u8; 28], &'static [u8]> = TableDefinition::new("accounts");
const SLOTS: TableDefinition<'static, &'static [u8; 60], &'static [u8; 32]> = TableDefinition::new("slots");
const WIPES: TableDefinition<'static, &'static [u8; 28], ()> = TableDefinition::new("wipes");
const BLOCKS: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("blocks");
const META: TableDefinition<'static, &'static str, u64> = TableDefinition::new("meta");
/// address | block: the block wrote some of the address's storage.
const STORAGE_WRITES: TableDefinition<'static, &'static [u8; 28], ()> = TableDefinition::new("storage_writes");

/// The store's layout, in `meta`; a store of another layout is refused
/// (`HistoryError::Format`) and rebuilt by its owner.
const FORMAT: u64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history store {path}: {source}")]
    Store { path: PathBuf, source: Box<redb::Error> },
    #[error("history store {path}: block {number} appended after block {last}; blocks are appended in order")]
    NotNext { path: PathBuf, number: u64, last: u64 },
    #[error("history store {path}: the record of block {number} is corrupt")]
    Corrupt { path: PathBuf, number: u64 },
    #[error("history store {path}: layout {found}, this tephra writes layout {FORMAT}; remove it to rebuild it")]
    Format { path: PathBuf, found: u64 },
    #[error("history store {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The blocks whose changes are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    pub first: u64,
    pub last: u64,
}

/// The store; see the module comment.
#[derive(Debug)]
pub struct HistoryStore {
    db: Database,
    path: PathBuf,
}

impl HistoryStore {
    /// Opens the store at `path`, made empty if there is none, with a page
    /// cache of at most `cache_bytes`.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Self, HistoryError> {
        let store = |source: redb::Error| HistoryError::Store { path: path.into(), source: Box::new(source) };
        let db = Database::builder().set_cache_size(cache_bytes).create(path).map_err(|e| store(e.into()))?;
        let txn = db.begin_write().map_err(|e| store(e.into()))?;
        {
            txn.open_table(ACCOUNTS).map_err(|e| store(e.into()))?;
            txn.open_table(SLOTS).map_err(|e| store(e.into()))?;
            txn.open_table(WIPES).map_err(|e| store(e.into()))?;
            txn.open_table(STORAGE_WRITES).map_err(|e| store(e.into()))?;
            let blocks = txn.open_table(BLOCKS).map_err(|e| store(e.into()))?;
            let mut meta = txn.open_table(META).map_err(|e| store(e.into()))?;
            // A store from before the layout was recorded holds blocks and no layout: 1.
            let empty = blocks.is_empty().map_err(|e| store(e.into()))?;
            let found = meta.get("format").map_err(|e| store(e.into()))?.map(|v| v.value());
            match found {
                Some(FORMAT) => {}
                None if empty => {
                    meta.insert("format", FORMAT).map_err(|e| store(e.into()))?;
                }
                found => return Err(HistoryError::Format { path: path.into(), found: found.unwrap_or(1) }),
            }
        }
        txn.commit().map_err(|e| store(e.into()))?;
        Ok(Self { db, path: path.into() })
    }

    fn error(&self, source: impl Into<redb::Error>) -> HistoryError {
        HistoryError::Store { path: self.path.clone(), source: Box::new(source.into()) }
    }

    /// The blocks stored, if any.
    pub fn stored(&self) -> Result<Option<Stored>, HistoryError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        stored_in(&txn).map_err(|e| self.error(e))
    }

    /// Stores block `number`'s changes; durable when it returns if
    /// `durable`, else at the next durable commit (a crash before it leaves
    /// the store as that commit left it: consistent, only shorter).
    pub fn append(&self, number: u64, changes: &BlockChanges, durable: bool) -> Result<(), HistoryError> {
        let stored = self.stored()?;
        if let Some(Stored { last, .. }) = stored
            && number != last + 1
        {
            return Err(HistoryError::NotNext { path: self.path.clone(), number, last });
        }
        let mut txn = self.db.begin_write().map_err(|e| self.error(e))?;
        let durability = if durable { Durability::Immediate } else { Durability::None };
        txn.set_durability(durability).map_err(|e| self.error(redb::Error::from(e)))?;
        // In key order: the B-tree's inserts land next to one another.
        let SortedChanges { accounts: changed_accounts, storage: changed_storage } = changes.sorted();
        {
            let mut accounts = txn.open_table(ACCOUNTS).map_err(|e| self.error(e))?;
            let mut slots = txn.open_table(SLOTS).map_err(|e| self.error(e))?;
            let mut wipes = txn.open_table(WIPES).map_err(|e| self.error(e))?;
            let mut storage_writes = txn.open_table(STORAGE_WRITES).map_err(|e| self.error(e))?;
            for (address, before) in &changed_accounts {
                let value = before.as_ref().map(codec::encode_account);
                accounts
                    .insert(&account_key(address, number), value.as_ref().map_or(&[][..], |v| &v[..]))
                    .map_err(|e| self.error(e))?;
            }
            for (address, before) in &changed_storage {
                storage_writes.insert(&account_key(address, number), ()).map_err(|e| self.error(e))?;
                if before.wiped {
                    wipes.insert(&account_key(address, number), ()).map_err(|e| self.error(e))?;
                }
                for (slot, value) in &before.slots {
                    slots
                        .insert(&slot_key(address, *slot, number), &value.to_be_bytes::<32>())
                        .map_err(|e| self.error(e))?;
                }
            }
            let mut blocks = txn.open_table(BLOCKS).map_err(|e| self.error(e))?;
            let record = codec::encode(&changed_accounts, &changed_storage);
            blocks.insert(number, record.as_slice()).map_err(|e| self.error(e))?;
            let mut meta = txn.open_table(META).map_err(|e| self.error(e))?;
            if stored.is_none() {
                meta.insert("first", number).map_err(|e| self.error(e))?;
            }
            meta.insert("last", number).map_err(|e| self.error(e))?;
        }
        txn.commit().map_err(|e| self.error(e))
    }

    /// Drops every block after `number` (the chain was rewound, or the log
    /// holds less than the store); how many were dropped.
    pub fn truncate_after(&self, number: u64) -> Result<u64, HistoryError> {
        let Some(stored) = self.stored()? else { return Ok(0) };
        if stored.last <= number {
            return Ok(0);
        }
        let dropped: Vec<u64> = (number.saturating_add(1).max(stored.first)..=stored.last).collect();
        let first_left = (number >= stored.first).then_some(stored.first);
        self.remove_blocks(&dropped, first_left.map(|first| Stored { first, last: number }))?;
        Ok(dropped.len() as u64)
    }

    /// Drops the oldest blocks, below `number`, at most `blocks_max` of
    /// them in one transaction; how many were dropped.
    pub fn prune_below(&self, number: u64, blocks_max: u64) -> Result<u64, HistoryError> {
        let Some(stored) = self.stored()? else { return Ok(0) };
        let end = number.min(stored.last + 1).min(stored.first.saturating_add(blocks_max));
        if end <= stored.first {
            return Ok(0);
        }
        let dropped: Vec<u64> = (stored.first..end).collect();
        let left = (end <= stored.last).then_some(Stored { first: end, last: stored.last });
        self.remove_blocks(&dropped, left)?;
        Ok(dropped.len() as u64)
    }

    /// Removes `numbers`' records and index entries, leaving `left` stored.
    fn remove_blocks(&self, numbers: &[u64], left: Option<Stored>) -> Result<(), HistoryError> {
        let mut txn = self.db.begin_write().map_err(|e| self.error(e))?;
        txn.set_durability(Durability::Immediate).map_err(|e| self.error(redb::Error::from(e)))?;
        {
            let mut blocks = txn.open_table(BLOCKS).map_err(|e| self.error(e))?;
            let mut accounts = txn.open_table(ACCOUNTS).map_err(|e| self.error(e))?;
            let mut slots = txn.open_table(SLOTS).map_err(|e| self.error(e))?;
            let mut wipes = txn.open_table(WIPES).map_err(|e| self.error(e))?;
            let mut storage_writes = txn.open_table(STORAGE_WRITES).map_err(|e| self.error(e))?;
            for &number in numbers {
                let record = blocks.remove(number).map_err(|e| self.error(e))?;
                let Some(record) = record else { continue };
                let changes = codec::decode(record.value())
                    .ok_or_else(|| HistoryError::Corrupt { path: self.path.clone(), number })?;
                drop(record);
                let SortedChanges { accounts: changed_accounts, storage: changed_storage } = changes.sorted();
                for (address, _) in &changed_accounts {
                    accounts.remove(&account_key(address, number)).map_err(|e| self.error(e))?;
                }
                for (address, before) in &changed_storage {
                    storage_writes.remove(&account_key(address, number)).map_err(|e| self.error(e))?;
                    wipes.remove(&account_key(address, number)).map_err(|e| self.error(e))?;
                    for (slot, _) in &before.slots {
                        slots.remove(&slot_key(address, *slot, number)).map_err(|e| self.error(e))?;
                    }
                }
            }
            let mut meta = txn.open_table(META).map_err(|e| self.error(e))?;
            match left {
                Some(Stored { first, last }) => {
                    meta.insert("first", first).map_err(|e| self.error(e))?;
                    meta.insert("last", last).map_err(|e| self.error(e))?;
                }
                None => {
                    meta.remove("first").map_err(|e| self.error(e))?;
                    meta.remove("last").map_err(|e| self.error(e))?;
                }
            }
        }
        txn.commit().map_err(|e| self.error(e))
    }

    /// Block `number`'s changes as stored, if it is.
    pub fn record(&self, number: u64) -> Result<Option<BlockChanges>, HistoryError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let blocks = txn.open_table(BLOCKS).map_err(|e| self.error(e))?;
        let Some(record) = blocks.get(number).map_err(|e| self.error(e))? else { return Ok(None) };
        let changes =
            codec::decode(record.value()).ok_or_else(|| HistoryError::Corrupt { path: self.path.clone(), number })?;
        Ok(Some(changes))
    }

    /// A consistent view of the store as it is now, for any number of reads.
    pub fn reader(&self) -> Result<HistoryReader, HistoryError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let stored = stored_in(&txn).map_err(|e| self.error(e))?;
        Ok(HistoryReader { txn, stored, path: self.path.clone() })
    }
}

/// A snapshot of the store; see `HistoryStore::reader`.
pub struct HistoryReader {
    txn: ReadTransaction,
    stored: Option<Stored>,
    path: PathBuf,
}

impl std::fmt::Debug for HistoryReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryReader").field("stored", &self.stored).finish_non_exhaustive()
    }
}

impl HistoryReader {
    pub fn stored(&self) -> Option<Stored> {
        self.stored
    }

    fn error(&self, source: impl Into<redb::Error>) -> HistoryError {
        HistoryError::Store { path: self.path.clone(), source: Box::new(source.into()) }
    }

    /// `address` before the first stored block after `after` that wrote it
    /// (`Some(None)`: it did not exist then); `None` if no stored block
    /// after `after` wrote it.
    pub fn account_after(&self, address: &Address, after: u64) -> Result<Option<Option<AccountBefore>>, HistoryError> {
        let table = self.txn.open_table(ACCOUNTS).map_err(|e| self.error(e))?;
        let Some(from) = after.checked_add(1) else { return Ok(None) };
        let mut range =
            table.range(&account_key(address, from)..=&account_key(address, u64::MAX)).map_err(|e| self.error(e))?;
        let Some(entry) = range.next() else { return Ok(None) };
        let (key, value) = entry.map_err(|e| self.error(e))?;
        let number = block_of(key.value());
        let value = value.value();
        if value.is_empty() {
            return Ok(Some(None));
        }
        let account =
            codec::decode_account(value).ok_or_else(|| HistoryError::Corrupt { path: self.path.clone(), number })?;
        Ok(Some(Some(account)))
    }

    /// The stored blocks in `from..=to` that changed `address`: its
    /// account (nonce, balance, code, existence) or its storage; ascending.
    pub fn blocks_changing(&self, address: &Address, from: u64, to: u64) -> Result<Vec<u64>, HistoryError> {
        let mut blocks = Vec::new();
        if from > to {
            return Ok(blocks);
        }
        let (first, last) = (account_key(address, from), account_key(address, to));
        let accounts = self.txn.open_table(ACCOUNTS).map_err(|e| self.error(e))?;
        for entry in accounts.range(&first..=&last).map_err(|e| self.error(e))? {
            blocks.push(block_of(entry.map_err(|e| self.error(e))?.0.value()));
        }
        let storage_writes = self.txn.open_table(STORAGE_WRITES).map_err(|e| self.error(e))?;
        for entry in storage_writes.range(&first..=&last).map_err(|e| self.error(e))? {
            blocks.push(block_of(entry.map_err(|e| self.error(e))?.0.value()));
        }
        blocks.sort_unstable();
        blocks.dedup();
        Ok(blocks)
    }

    /// `slot` of `address` before the first stored block after `after`
    /// that wrote it or wiped the account's storage; `None` if none did. (A
    /// slot of an account made later was zero, and its first write after
    /// that keeps the zero.)
    pub fn slot_after(&self, address: &Address, slot: U256, after: u64) -> Result<Option<U256>, HistoryError> {
        let Some(from) = after.checked_add(1) else { return Ok(None) };
        let slots = self.txn.open_table(SLOTS).map_err(|e| self.error(e))?;
        let wipes = self.txn.open_table(WIPES).map_err(|e| self.error(e))?;
        let written = slots
            .range(&slot_key(address, slot, from)..=&slot_key(address, slot, u64::MAX))
            .map_err(|e| self.error(e))?
            .next()
            .transpose()
            .map_err(|e| self.error(e))?
            .map(|(key, value)| (block_of(key.value()), U256::from_be_bytes(*value.value())));
        let wiped = wipes
            .range(&account_key(address, from)..=&account_key(address, u64::MAX))
            .map_err(|e| self.error(e))?
            .next()
            .transpose()
            .map_err(|e| self.error(e))?
            .map(|(key, _)| block_of(key.value()));
        Ok(match (written, wiped) {
            (Some((at, value)), Some(wipe)) if at <= wipe => Some(value),
            (Some(_), Some(_)) | (None, Some(_)) => Some(U256::ZERO),
            (Some((_, value)), None) => Some(value),
            (None, None) => None,
        })
    }
}

fn stored_in(txn: &ReadTransaction) -> Result<Option<Stored>, redb::Error> {
    let meta = txn.open_table(META)?;
    let first = meta.get("first")?.map(|v| v.value());
    let last = meta.get("last")?.map(|v| v.value());
    Ok(first.zip(last).map(|(first, last)| Stored { first, last }))
}

fn account_key(address: &Address, number: u64) -> [u8; 28] {
    let mut key = [0; 28];
    key[..20].copy_from_slice(address.as_slice());
    key[20..].copy_from_slice(&number.to_be_bytes());
    key
}

fn slot_key(address: &Address, slot: U256, number: u64) -> [u8; 60] {
    let mut key = [0; 60];
    key[..20].copy_from_slice(address.as_slice());
    key[20..52].copy_from_slice(&slot.to_be_bytes::<32>());
    key[52..].copy_from_slice(&number.to_be_bytes());
    key
}

/// The block number a key ends with.
fn block_of(key: &[u8]) -> u64 {
    let mut number = [0; 8];
    number.copy_from_slice(&key[key.len() - 8..]);
    u64::from_be_bytes(number)
}
