//! State: accounts, storage and code in memory behind revm's `DatabaseRef` and
//! `DatabaseCommit`, with an incremental Merkle-Patricia state root.
//!
//! Every write marks what it touched; `state_root` rehashes only the trie paths
//! of accounts and slots changed since the previous root, so its cost grows with
//! the keys a block changed, not with the size of the state.

use std::collections::VecDeque;

use alloy_genesis::Genesis;
use alloy_primitives::{
    Address, B256, U256, keccak256,
    map::{AddressMap, B256Map, HashSet, U256Map},
};
use alloy_trie::{EMPTY_ROOT_HASH, TrieAccount};
use revm::{
    Database, DatabaseCommit, DatabaseRef,
    bytecode::Bytecode,
    primitives::{KECCAK_EMPTY, hardfork::SpecId},
    state::{Account as EvmAccount, AccountInfo},
};
use tephra_types::limits::BLOCK_HASH_HISTORY;

use crate::trie::MerkleTrie;

/// One account as stored.
#[derive(Clone, Debug, Default)]
pub struct Account {
    pub nonce: u64,
    pub balance: U256,
    pub code_hash: B256,
    /// Non-zero slots only: a slot written to zero is removed.
    pub storage: U256Map<U256>,
    /// keccak256 of the address, the account's key in the state trie.
    hashed_address: B256,
    /// The storage trie and the slots written since its last root; boxed and
    /// made on the first write, so that an account without storage (most of
    /// them) stays small.
    storage_index: Option<Box<StorageIndex>>,
    /// Written since the last root (listed in its partition's `dirty`).
    dirty: bool,
}

#[derive(Clone, Debug, Default)]
struct StorageIndex {
    trie: MerkleTrie,
    dirty_slots: HashSet<U256>,
}

impl Account {
    fn new(address: Address) -> Self {
        Self { code_hash: KECCAK_EMPTY, hashed_address: keccak256(address), ..Default::default() }
    }

    fn set_slot(&mut self, slot: U256, value: U256) {
        if value.is_zero() {
            self.storage.remove(&slot);
        } else {
            self.storage.insert(slot, value);
        }
        self.storage_index.get_or_insert_default().dirty_slots.insert(slot);
    }

    fn clear_storage(&mut self) {
        self.storage.clear();
        self.storage_index = None;
    }

    /// Folds the dirty slots into the storage trie and returns its root.
    fn storage_root(&mut self) -> B256 {
        let Some(index) = &mut self.storage_index else {
            return EMPTY_ROOT_HASH;
        };
        for slot in index.dirty_slots.drain() {
            let key = keccak256(slot.to_be_bytes::<32>());
            match self.storage.get(&slot) {
                Some(value) => index.trie.insert(key, alloy_rlp::encode(value)),
                None => index.trie.remove(key),
            }
        }
        index.trie.root()
    }
}

/// What committing one of revm's account changes does to the stored account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    Untouched,
    /// Self-destructed, or touched and empty from Spurious Dragon on (EIP-161).
    Remove,
    /// Written; a created account starts from empty storage.
    Write {
        clear_storage: bool,
    },
}

impl Effect {
    pub(crate) fn of(change: &EvmAccount, spec: SpecId) -> Self {
        if !change.is_touched() {
            return Self::Untouched;
        }
        let eip161 = spec.is_enabled_in(SpecId::SPURIOUS_DRAGON);
        if change.is_selfdestructed() || (eip161 && change.info.is_empty()) {
            return Self::Remove;
        }
        Self::Write { clear_storage: change.is_created() }
    }
}

/// Recent block hashes for the BLOCKHASH opcode, bounded to the 256 it can see.
#[derive(Clone, Debug, Default)]
struct BlockHashes {
    /// Hash of block `first_number + i` at index `i`.
    hashes: VecDeque<B256>,
    first_number: u64,
}

impl BlockHashes {
    fn push(&mut self, number: u64, hash: B256) {
        if self.hashes.is_empty() || number != self.first_number + self.hashes.len() as u64 {
            self.hashes.clear();
            self.first_number = number;
        }
        self.hashes.push_back(hash);
        while self.hashes.len() as u64 > BLOCK_HASH_HISTORY {
            self.hashes.pop_front();
            self.first_number += 1;
        }
    }

    fn get(&self, number: u64) -> B256 {
        number
            .checked_sub(self.first_number)
            .and_then(|i| self.hashes.get(usize::try_from(i).ok()?))
            .copied()
            .unwrap_or_default()
    }
}

/// The accounts are split by address into this many partitions, so that a
/// parallel commit can write disjoint partitions from several cores.
pub const STATE_PARTITIONS: usize = 16;

fn partition_of(address: &Address) -> usize {
    usize::from(address[19]) % STATE_PARTITIONS
}

/// One partition of the accounts. Aligned to its own cache lines: threads
/// committing neighbouring partitions must not share one.
#[derive(Clone, Debug, Default)]
#[repr(align(128))]
pub(crate) struct Partition {
    accounts: AddressMap<Account>,
    /// Accounts written since the last root, each once, and removed ones
    /// (perhaps more than once: folding a removal twice is harmless).
    dirty: Vec<Address>,
}

impl Partition {
    fn touch(&mut self, address: Address) -> &mut Account {
        let account = self.accounts.entry(address).or_insert_with(|| Account::new(address));
        if !account.dirty {
            account.dirty = true;
            self.dirty.push(address);
        }
        account
    }

    fn insert(&mut self, address: Address, mut account: Account) {
        account.dirty = true;
        if self.accounts.insert(address, account).is_none_or(|old| !old.dirty) {
            self.dirty.push(address);
        }
    }

    fn remove(&mut self, address: &Address) {
        if self.accounts.remove(address).is_some() {
            self.dirty.push(*address);
        }
    }

    /// The account part of `StateDb::apply`; code is stored by the caller.
    fn apply(&mut self, address: Address, change: &EvmAccount, spec: SpecId) {
        let clear_storage = match Effect::of(change, spec) {
            Effect::Untouched => return,
            Effect::Remove => {
                self.remove(&address);
                return;
            }
            Effect::Write { clear_storage } => clear_storage,
        };
        let account = self.touch(address);
        if clear_storage {
            account.clear_storage();
        }
        account.nonce = change.info.nonce;
        account.balance = change.info.balance;
        account.code_hash = change.info.code_hash;
        for (slot, value) in &change.storage {
            if value.is_changed() {
                account.set_slot(*slot, value.present_value);
            }
        }
    }
}

/// A set of partitions one thread of a parallel commit writes.
#[derive(Debug)]
pub(crate) struct PartitionGroup<'a> {
    /// Indexed by partition number; `None` for the other groups' partitions.
    partitions: Vec<Option<&'a mut Partition>>,
    spec: SpecId,
}

impl PartitionGroup<'_> {
    /// Applies `change` if `address` falls in this group; others are left to
    /// the group that holds them.
    pub(crate) fn apply(&mut self, address: Address, change: &EvmAccount) {
        if let Some(partition) = &mut self.partitions[partition_of(&address)] {
            partition.apply(address, change, self.spec);
        }
    }
}

/// The whole world state, in memory.
#[derive(Clone, Debug)]
pub struct StateDb {
    partitions: Vec<Partition>,
    codes: B256Map<Bytecode>,
    account_trie: MerkleTrie,
    block_hashes: BlockHashes,
    /// EIP-161 removes touched empty accounts from Spurious Dragon on.
    spec: SpecId,
}

impl Default for StateDb {
    fn default() -> Self {
        Self {
            partitions: vec![Partition::default(); STATE_PARTITIONS],
            codes: B256Map::default(),
            account_trie: MerkleTrie::new(),
            block_hashes: BlockHashes::default(),
            spec: SpecId::default(),
        }
    }
}

impl StateDb {
    /// The state a genesis file allocates. Zero storage values are skipped, as
    /// geth does.
    pub fn from_genesis(genesis: &Genesis) -> Self {
        let mut state = Self::default();
        for (address, alloc) in &genesis.alloc {
            let mut account = Account::new(*address);
            account.nonce = alloc.nonce.unwrap_or(0);
            account.balance = alloc.balance;
            if let Some(code) = alloc.code.as_ref().filter(|code| !code.is_empty()) {
                let bytecode = Bytecode::new_raw(code.clone());
                account.code_hash = bytecode.hash_slow();
                state.codes.insert(account.code_hash, bytecode);
            }
            for (slot, value) in alloc.storage.iter().flatten() {
                let value = U256::from_be_bytes(value.0);
                if !value.is_zero() {
                    account.set_slot(U256::from_be_bytes(slot.0), value);
                }
            }
            state.put(*address, account);
        }
        state
    }

    /// Sets the rules commits follow (EIP-161 empty-account removal).
    pub fn set_spec(&mut self, spec: SpecId) {
        self.spec = spec;
    }

    pub fn account(&self, address: &Address) -> Option<&Account> {
        self.partitions[partition_of(address)].accounts.get(address)
    }

    pub fn accounts(&self) -> impl Iterator<Item = (&Address, &Account)> {
        self.partitions.iter().flat_map(|partition| partition.accounts.iter())
    }

    pub fn account_count(&self) -> usize {
        self.partitions.iter().map(|partition| partition.accounts.len()).sum()
    }

    /// The root of `address`'s storage trie (empty for no account or no
    /// storage), as the state root takes it: from Isthmus on, an OP Stack
    /// header's withdrawals root is the L2ToL1MessagePasser's.
    pub fn storage_root_of(&mut self, address: &Address) -> B256 {
        let accounts = &mut self.partitions[partition_of(address)].accounts;
        accounts.get_mut(address).map_or(EMPTY_ROOT_HASH, Account::storage_root)
    }

    fn put(&mut self, address: Address, account: Account) {
        self.partitions[partition_of(&address)].insert(address, account);
    }

    /// The partitions split into `groups` disjoint groups (partition `p` in
    /// group `p % groups`), for a commit on `groups` threads. Code is not in
    /// any partition: `store_code` first.
    pub(crate) fn partition_groups(&mut self, groups: usize) -> Vec<PartitionGroup<'_>> {
        let spec = self.spec;
        let mut split: Vec<PartitionGroup<'_>> = (0..groups)
            .map(|_| PartitionGroup { partitions: (0..STATE_PARTITIONS).map(|_| None).collect(), spec })
            .collect();
        for (p, partition) in self.partitions.iter_mut().enumerate() {
            split[p % groups].partitions[p] = Some(partition);
        }
        split
    }

    /// Stores the code a change deploys, as `apply` does.
    pub(crate) fn store_code(&mut self, change: &EvmAccount) {
        if matches!(Effect::of(change, self.spec), Effect::Write { .. })
            && change.info.code_hash != KECCAK_EMPTY
            && let Some(code) = &change.info.code
            && !self.codes.contains_key(&change.info.code_hash)
        {
            self.codes.insert(change.info.code_hash, code.clone());
        }
    }

    pub fn code(&self, code_hash: &B256) -> Option<&Bytecode> {
        self.codes.get(code_hash)
    }

    pub fn codes(&self) -> impl Iterator<Item = (&B256, &Bytecode)> {
        self.codes.iter()
    }

    pub fn balance(&self, address: &Address) -> U256 {
        self.account(address).map_or(U256::ZERO, |a| a.balance)
    }

    pub fn nonce(&self, address: &Address) -> u64 {
        self.account(address).map_or(0, |a| a.nonce)
    }

    pub fn storage_at(&self, address: &Address, slot: U256) -> U256 {
        self.account(address).and_then(|a| a.storage.get(&slot).copied()).unwrap_or_default()
    }

    /// Records a sealed block's hash for BLOCKHASH.
    pub fn push_block_hash(&mut self, number: u64, hash: B256) {
        self.block_hashes.push(number, hash);
    }

    /// The block hashes BLOCKHASH can see, oldest first.
    pub fn block_hashes(&self) -> impl Iterator<Item = (u64, B256)> + '_ {
        let first = self.block_hashes.first_number;
        self.block_hashes.hashes.iter().enumerate().map(move |(i, h)| (first + i as u64, *h))
    }

    /// Writes one account wholesale (snapshot restore, genesis, tests).
    pub fn insert_account(
        &mut self,
        address: Address,
        nonce: u64,
        balance: U256,
        code: Option<Bytecode>,
        storage: impl IntoIterator<Item = (U256, U256)>,
    ) {
        let mut account = Account::new(address);
        account.nonce = nonce;
        account.balance = balance;
        if let Some(code) = code {
            account.code_hash = code.hash_slow();
            self.codes.insert(account.code_hash, code);
        }
        for (slot, value) in storage {
            account.set_slot(slot, value);
        }
        self.put(address, account);
    }

    /// Adds to an account's balance, creating it if needed.
    pub fn add_balance(&mut self, address: Address, amount: U256) {
        let account = self.partitions[partition_of(&address)].touch(address);
        account.balance = account.balance.saturating_add(amount);
    }

    /// Applies one transaction's changes as revm reports them.
    pub fn apply(&mut self, address: Address, change: &EvmAccount) {
        self.store_code(change);
        self.partitions[partition_of(&address)].apply(address, change, self.spec);
    }

    /// Credits `amount` to `address` as revm pays a block beneficiary: the
    /// account is touched (EIP-161 removes it if it stays empty) and a credit
    /// that would overflow its balance is not made.
    pub fn credit(&mut self, address: Address, amount: U256) {
        let mut info = self.basic_ref(address).unwrap_or_default().unwrap_or_default();
        if let Some(balance) = info.balance.checked_add(amount) {
            info.balance = balance;
        }
        let mut change = EvmAccount::from(info);
        change.mark_touch();
        self.apply(address, &change);
    }

    /// The state root. Rehashes only what changed since the previous call.
    pub fn state_root(&mut self) -> B256 {
        for partition in &mut self.partitions {
            for address in partition.dirty.drain(..) {
                match partition.accounts.get_mut(&address) {
                    Some(account) => {
                        account.dirty = false;
                        let leaf = TrieAccount {
                            nonce: account.nonce,
                            balance: account.balance,
                            storage_root: account.storage_root(),
                            code_hash: account.code_hash,
                        };
                        self.account_trie.insert(account.hashed_address, alloy_rlp::encode(leaf));
                    }
                    None => self.account_trie.remove(keccak256(address)),
                }
            }
        }
        self.account_trie.root()
    }
}

impl DatabaseRef for StateDb {
    type Error = core::convert::Infallible;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        Ok(self.account(&address).map(|account| AccountInfo {
            balance: account.balance,
            nonce: account.nonce,
            code_hash: account.code_hash,
            // Loaded by hash when the account's code runs: most loads only
            // move value (fee vaults, senders, recipients).
            code: None,
            ..Default::default()
        }))
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        Ok(self.codes.get(&code_hash).cloned().unwrap_or_default())
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, Self::Error> {
        Ok(self.storage_at(&address, index))
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Self::Error> {
        Ok(self.block_hashes.get(number))
    }
}

/// revm's `Database` for executing straight on the state: the reads never fail
/// and need no cache in between.
impl Database for StateDb {
    type Error = core::convert::Infallible;

    fn basic(&mut self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        self.basic_ref(address)
    }

    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        self.code_by_hash_ref(code_hash)
    }

    fn storage(&mut self, address: Address, index: U256) -> Result<U256, Self::Error> {
        self.storage_ref(address, index)
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, Self::Error> {
        self.block_hash_ref(number)
    }
}

impl DatabaseCommit for StateDb {
    fn commit(&mut self, changes: AddressMap<EvmAccount>) {
        for (address, change) in &changes {
            self.apply(*address, change);
        }
    }
}
