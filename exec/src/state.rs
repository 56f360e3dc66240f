//! State: accounts, storage and code in memory behind revm's `DatabaseRef` and
//! `DatabaseCommit`, with the Merkle commitment beside it (`commitment`).
//!
//! Every write marks what it touched; `take_diff` hands the accounts and
//! slots changed since the previous diff to the commitment, so that a root's
//! cost grows with the keys a block changed, not with the size of the state.

use std::collections::VecDeque;

use alloy_genesis::Genesis;
use alloy_primitives::{
    Address, B256, U256, keccak256,
    map::{AddressMap, B256Map, HashSet, U256Map},
};
use revm::{
    Database, DatabaseCommit, DatabaseRef,
    bytecode::Bytecode,
    primitives::{KECCAK_EMPTY, hardfork::SpecId},
    state::{Account as EvmAccount, AccountInfo},
};
use tephra_types::limits::BLOCK_HASH_HISTORY;

use crate::{
    commitment::{AccountChange, AccountLeaf, Commitment, StateDiff},
    durable::{AccountBefore, AccountFields, Before, BlockChanges, PreImages},
};

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
    /// Slots written since the last diff; boxed and made on the first
    /// write, so that an account without storage (most of them) stays small.
    dirty_slots: Option<Box<HashSet<U256>>>,
    /// The storage started again from empty since the last diff (a new
    /// account object: created, restored, or made again after removal).
    storage_reset: bool,
    /// Written since the last diff (listed in its partition's `dirty`).
    dirty: bool,
}

impl Account {
    fn new(address: Address) -> Self {
        Self { code_hash: KECCAK_EMPTY, hashed_address: keccak256(address), storage_reset: true, ..Default::default() }
    }

    fn set_slot(&mut self, slot: U256, value: U256) {
        if value.is_zero() {
            self.storage.remove(&slot);
        } else {
            self.storage.insert(slot, value);
        }
        self.dirty_slots.get_or_insert_default().insert(slot);
    }

    fn clear_storage(&mut self) {
        self.storage.clear();
        self.dirty_slots = None;
        self.storage_reset = true;
    }

    fn fields(&self) -> AccountFields {
        AccountFields { nonce: self.nonce, balance: self.balance, code_hash: self.code_hash }
    }

    /// The account's change since the last diff; clears its marks.
    fn take_change(&mut self) -> AccountChange {
        self.dirty = false;
        let written = self.dirty_slots.iter_mut().flat_map(|slots| slots.drain());
        let slots = written.map(|slot| (slot, self.storage.get(&slot).copied().unwrap_or_default()));
        let leaf = AccountLeaf {
            nonce: self.nonce,
            balance: self.balance,
            code_hash: self.code_hash,
            storage_reset: std::mem::take(&mut self.storage_reset),
            slots: slots.collect(),
        };
        AccountChange { hashed_address: self.hashed_address, account: Some(leaf) }
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

pub(crate) fn partition_of(address: &Address) -> usize {
    usize::from(address[19]) % STATE_PARTITIONS
}

/// One partition of the accounts. Aligned to its own cache lines: threads
/// committing neighbouring partitions must not share one.
#[derive(Clone, Debug, Default)]
#[repr(align(128))]
pub(crate) struct Partition {
    accounts: AddressMap<Account>,
    /// Accounts written since the last diff, each once, and removed ones
    /// (perhaps more than once: a removal taken twice is harmless).
    dirty: Vec<Address>,
    /// While a mini-block is not yet durable: what its writes overwrote.
    pre_images: PreImages,
    /// While a block is open, with history kept: what its writes overwrote.
    block_before: PreImages,
}

impl Partition {
    fn keeping(&self) -> bool {
        self.pre_images.keeping() || self.block_before.keeping()
    }

    /// Keeps `address` as it is, before a write, where old values are kept.
    fn keep_account(&mut self, address: Address) {
        if self.keeping() {
            let now = self.accounts.get(&address).map(Account::fields);
            self.pre_images.account(address, || now);
            self.block_before.account(address, || now);
        }
    }

    /// Keeps `slot` of `address` as it is, before a write.
    fn keep_slot(&mut self, address: Address, slot: U256) {
        if self.keeping() {
            let now = self.accounts.get(&address).and_then(|account| account.storage.get(&slot)).copied();
            self.pre_images.slot(address, slot, || now.unwrap_or_default());
            self.block_before.slot(address, slot, || now.unwrap_or_default());
        }
    }

    fn touch(&mut self, address: Address) -> &mut Account {
        self.keep_account(address);
        let account = self.accounts.entry(address).or_insert_with(|| Account::new(address));
        if !account.dirty {
            account.dirty = true;
            self.dirty.push(address);
        }
        account
    }

    fn insert(&mut self, address: Address, mut account: Account) {
        self.keep_whole(address);
        account.dirty = true;
        if self.accounts.insert(address, account).is_none_or(|old| !old.dirty) {
            self.dirty.push(address);
        }
    }

    fn remove(&mut self, address: &Address) {
        self.keep_whole(*address);
        if self.accounts.remove(address).is_some() {
            self.dirty.push(*address);
        }
    }

    /// Keeps the account and all its storage as they are, if keeping.
    fn keep_whole(&mut self, address: Address) {
        if !self.keeping() {
            return;
        }
        self.keep_account(address);
        let now = self.accounts.get(&address).map(|account| &account.storage);
        self.pre_images.whole_storage(address, now);
        self.block_before.whole_storage(address, now);
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
        let changed = change.storage.iter().filter(|(_, value)| value.is_changed());
        if clear_storage {
            self.keep_whole(address);
        }
        for (slot, _) in changed.clone() {
            self.keep_slot(address, *slot);
        }
        let account = self.touch(address);
        if clear_storage {
            account.clear_storage();
        }
        account.nonce = change.info.nonce;
        account.balance = change.info.balance;
        account.code_hash = change.info.code_hash;
        for (slot, value) in changed {
            account.set_slot(*slot, value.present_value);
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
    /// `None` while a hasher thread holds it (`detach_commitment`).
    commitment: Option<Commitment>,
    block_hashes: BlockHashes,
    /// EIP-161 removes touched empty accounts from Spurious Dragon on.
    spec: SpecId,
}

impl Default for StateDb {
    fn default() -> Self {
        Self {
            partitions: vec![Partition::default(); STATE_PARTITIONS],
            codes: B256Map::default(),
            commitment: Some(Commitment::default()),
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
        self.commitment_up_to_date().storage_root(&keccak256(address))
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
        self.commitment_up_to_date().state_root()
    }

    /// The accounts and slots changed since the previous diff, for a
    /// commitment held elsewhere (`detach_commitment`).
    pub fn take_diff(&mut self) -> StateDiff {
        let mut diff = StateDiff::default();
        for partition in &mut self.partitions {
            for address in partition.dirty.drain(..) {
                let change = match partition.accounts.get_mut(&address) {
                    Some(account) if account.dirty => account.take_change(),
                    // Listed twice (removed, then written again): taken already.
                    Some(_) => continue,
                    None => AccountChange { hashed_address: keccak256(address), account: None },
                };
                diff.accounts.push(change);
            }
        }
        diff
    }

    /// Hands the commitment over (to a hasher thread, fed `take_diff` after
    /// every change): until it is attached again, asking this state for a
    /// root is a bug and panics.
    pub fn detach_commitment(&mut self) -> Commitment {
        let mut commitment = self.commitment.take().expect("the state holds its commitment");
        commitment.apply(self.take_diff());
        commitment
    }

    /// Takes back a commitment that has applied every diff taken from this
    /// state; what changed since is folded in at the next root.
    pub fn attach_commitment(&mut self, commitment: Commitment) {
        assert!(self.commitment.is_none(), "the state holds a commitment already");
        self.commitment = Some(commitment);
    }

    /// From now on, every write keeps what it overwrites, so that `durable`
    /// reads see the state as it is now until `release_pre_images`: a
    /// mini-block is executed, then made durable with no lock held.
    pub fn keep_pre_images(&mut self) {
        self.partitions.iter_mut().for_each(|partition| partition.pre_images.keep());
    }

    /// The writes since `keep_pre_images` are durable: reads see them.
    pub fn release_pre_images(&mut self) {
        self.partitions.iter_mut().for_each(|partition| partition.pre_images.release());
    }

    /// From now on every write keeps what it overwrites, for the history of
    /// blocks (their reverse changes), taken at each seal.
    pub fn keep_block_changes(&mut self) {
        self.partitions.iter_mut().for_each(|partition| partition.block_before.keep());
    }

    /// What the writes since the last take (or `keep_block_changes`)
    /// overwrote, each key once, as it was before the first of them; keeping
    /// goes on for the next block. `None` when not keeping.
    pub fn take_block_changes(&mut self) -> Option<BlockChanges> {
        if !self.partitions.first().is_some_and(|partition| partition.block_before.keeping()) {
            return None;
        }
        let parts = self.partitions.iter_mut().map(|partition| {
            let mut next = PreImages::default();
            next.keep();
            std::mem::replace(&mut partition.block_before, next)
        });
        Some(BlockChanges::from_partitions(parts.collect()))
    }

    /// `address` before the block being built now, if its writes so far
    /// (since the last `take_block_changes`) wrote it: the newest layer of
    /// the state history.
    pub fn open_block_account_before(&self, address: &Address) -> Option<Option<AccountBefore>> {
        match self.partitions[partition_of(address)].block_before.account_before(address) {
            Before::Was(before) => Some(before.map(AccountBefore::from)),
            Before::Unwritten => None,
        }
    }

    /// `slot` of `address` before the block being built now, if its writes
    /// so far wrote it (or wiped or made the account).
    pub fn open_block_slot_before(&self, address: &Address, slot: U256) -> Option<U256> {
        match self.partitions[partition_of(address)].block_before.slot_before(address, slot) {
            Before::Was(value) => Some(value),
            Before::Unwritten => None,
        }
    }

    /// Reads of the state as the last durable write left it.
    pub fn durable(&self) -> DurableState<'_> {
        DurableState { state: self }
    }

    fn pre_images(&self, address: &Address) -> &PreImages {
        &self.partitions[partition_of(address)].pre_images
    }

    /// The commitment this state holds, with every change folded in.
    pub fn commitment_up_to_date(&mut self) -> &mut Commitment {
        let diff = self.take_diff();
        let commitment = self.commitment.as_mut().expect("the commitment is with a hasher thread: ask it for roots");
        commitment.apply(diff);
        commitment
    }
}

/// The state as the last durable mini-block left it, which is what reads may
/// see: the accounts and slots a mini-block not yet durable wrote are read
/// as they were before it (`durable.rs`).
#[derive(Clone, Copy, Debug)]
pub struct DurableState<'a> {
    state: &'a StateDb,
}

impl<'a> DurableState<'a> {
    fn fields(&self, address: &Address) -> Option<AccountFields> {
        match self.state.pre_images(address).account_before(address) {
            Before::Was(kept) => kept,
            Before::Unwritten => self.state.account(address).map(Account::fields),
        }
    }

    pub fn nonce(&self, address: &Address) -> u64 {
        self.fields(address).map_or(0, |a| a.nonce)
    }

    pub fn balance(&self, address: &Address) -> U256 {
        self.fields(address).map_or(U256::ZERO, |a| a.balance)
    }

    /// The account's code (none for no account or no code).
    pub fn code(&self, address: &Address) -> Option<&'a Bytecode> {
        self.state.code(&self.fields(address)?.code_hash)
    }

    pub fn storage_at(&self, address: &Address, slot: U256) -> U256 {
        match self.state.pre_images(address).slot_before(address, slot) {
            Before::Was(value) => value,
            Before::Unwritten => self.state.storage_at(address, slot),
        }
    }
}

impl DatabaseRef for DurableState<'_> {
    type Error = core::convert::Infallible;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        Ok(self.fields(&address).map(AccountFields::info))
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        self.state.code_by_hash_ref(code_hash)
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, Self::Error> {
        Ok(self.storage_at(&address, index))
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Self::Error> {
        self.state.block_hash_ref(number)
    }
}

impl DatabaseRef for StateDb {
    type Error = core::convert::Infallible;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        Ok(self.account(&address).map(|account| account.fields().info()))
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    use crate::testing::{StateOp as Op, address, apply, op, slots};

    proptest! {
        /// Each block's reverse changes, asked in order after block k, read
        /// back the state at block k from the state now, with mini-blocks'
        /// durable-read windows opened and released inside the blocks.
        #[test]
        fn block_changes_read_back_every_earlier_state(
            blocks in proptest::collection::vec(proptest::collection::vec(op(), 0..20), 1..6),
            open in proptest::collection::vec(op(), 0..20),
        ) {
            let mut state = StateDb::default();
            state.set_spec(SpecId::PRAGUE);
            let mut states = vec![state.clone()];
            let mut changes = Vec::new();
            state.keep_block_changes();
            for ops in &blocks {
                for (i, mini_block) in ops.chunks(3).enumerate() {
                    if i % 2 == 0 {
                        state.keep_pre_images();
                    }
                    mini_block.iter().for_each(|op| apply(&mut state, op));
                    state.release_pre_images();
                }
                changes.push(state.take_block_changes().expect("keeping"));
                states.push(state.clone());
            }
            // A block being built: its writes so far are the newest layer.
            open.iter().for_each(|op| apply(&mut state, op));
            for (k, then) in states.iter().enumerate() {
                let after = &changes[k..];
                for a in 0..crate::testing::ACCOUNTS {
                    let address = address(a);
                    let account = after
                        .iter()
                        .find_map(|c| c.account(&address))
                        .or_else(|| state.open_block_account_before(&address))
                        .unwrap_or_else(|| state.account(&address).map(|account| AccountBefore::from(account.fields())));
                    prop_assert_eq!(account, then.account(&address).map(|account| AccountBefore::from(account.fields())));
                    for slot in slots() {
                        let value = after
                            .iter()
                            .find_map(|c| c.slot(&address, slot))
                            .or_else(|| state.open_block_slot_before(&address, slot))
                            .unwrap_or_else(|| state.storage_at(&address, slot));
                        prop_assert_eq!(value, then.storage_at(&address, slot), "block {} {} slot {}", k, address, slot);
                    }
                }
            }
        }
    }

    /// The root of a state written from scratch with the accounts of `state`.
    fn root_from_scratch(state: &StateDb) -> B256 {
        let mut fresh = StateDb::default();
        for (address, account) in state.accounts() {
            let storage = account.storage.iter().map(|(slot, value)| (*slot, *value));
            fresh.insert_account(*address, account.nonce, account.balance, None, storage);
        }
        fresh.state_root()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        /// While a mini-block's writes are kept, durable reads see the state
        /// as it was when keeping began (a copy taken then is the oracle),
        /// whatever the writes did: slots written, storage cleared by a
        /// creation, accounts made, credited or removed; once released, they
        /// see the state as it is.
        #[test]
        fn durable_reads_see_the_state_before_the_kept_writes(
            before in proptest::collection::vec(op(), 0..60),
            during in proptest::collection::vec(op(), 1..60),
        ) {
            let mut state = StateDb::default();
            state.set_spec(SpecId::PRAGUE);
            for op in &before {
                apply(&mut state, op);
            }
            let oracle = state.clone();
            state.keep_pre_images();
            for op in &during {
                apply(&mut state, op);
            }
            let reads_equal = |a: DurableState<'_>, b: &StateDb| -> Result<(), TestCaseError> {
                for k in 0..12 {
                    let address = address(k);
                    prop_assert_eq!(a.basic_ref(address).unwrap(), b.basic_ref(address).unwrap());
                    prop_assert_eq!(a.nonce(&address), b.nonce(&address));
                    prop_assert_eq!(a.balance(&address), b.balance(&address));
                    for slot in slots() {
                        prop_assert_eq!(a.storage_at(&address, slot), b.storage_at(&address, slot));
                    }
                }
                Ok(())
            };
            reads_equal(state.durable(), &oracle)?;
            state.release_pre_images();
            let now = state.clone();
            reads_equal(state.durable(), &now)?;
        }

        /// A commitment handed to another owner and fed diffs gives the roots
        /// of one folded in place, whenever the diffs are taken, and both
        /// equal the root of the same accounts written from scratch.
        #[test]
        fn a_detached_commitment_fed_diffs_gives_the_same_roots(ops in proptest::collection::vec(op(), 1..120)) {
            let (mut attached, mut detached) = (StateDb::default(), StateDb::default());
            detached.set_spec(SpecId::PRAGUE);
            attached.set_spec(SpecId::PRAGUE);
            let mut commitment = detached.detach_commitment();
            for op in &ops {
                apply(&mut attached, op);
                apply(&mut detached, op);
                if matches!(op, Op::Look) {
                    commitment.apply(detached.take_diff());
                    prop_assert_eq!(commitment.state_root(), attached.state_root());
                }
            }
            commitment.apply(detached.take_diff());
            let root = attached.state_root();
            prop_assert_eq!(commitment.state_root(), root);
            prop_assert_eq!(root_from_scratch(&attached), root);
            for a in 0..crate::testing::ACCOUNTS {
                let hashed = keccak256(address(a));
                prop_assert_eq!(commitment.storage_root(&hashed), attached.storage_root_of(&address(a)));
            }
            detached.attach_commitment(commitment);
            prop_assert_eq!(detached.state_root(), root);
        }
    }
}
