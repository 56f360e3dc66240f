//! One shard's speculative view of the state: the window's starting state,
//! the shard's own writes so far, and a record of every value read.

use alloy_primitives::{
    Address, B256, Bytes, U256,
    map::{AddressMap, B256Map, U256Map},
};
use revm::{
    Database, DatabaseRef,
    bytecode::Bytecode,
    context_interface::result::{ExecutionResult, HaltReason},
    primitives::{KECCAK_EMPTY, hardfork::SpecId},
    state::{Account as EvmAccount, AccountInfo, EvmState},
};
use tephra_types::Reject;

use super::SHARD_CODE_CACHE_MAX;
use crate::{
    evm::{self, RewardAware},
    params::BlockParams,
    state::{Account, Effect, StateDb},
    verify::VerifiedTx,
};

/// What a read of an account observes. Code is content-addressed, so its hash
/// stands for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AccountView {
    nonce: u64,
    balance: U256,
    code_hash: B256,
}

impl AccountView {
    fn of(account: &Account) -> Self {
        Self { nonce: account.nonce, balance: account.balance, code_hash: account.code_hash }
    }
}

/// Every value one transaction read from the state, as it read it.
#[derive(Debug, Default)]
pub(crate) struct ReadSet {
    accounts: Vec<(Address, Option<AccountView>)>,
    slots: Vec<(Address, U256, U256)>,
}

impl ReadSet {
    /// Whether `state` still holds every value read. Execution is a function
    /// of the values read (block and code are fixed), so then executing the
    /// transaction on `state` gives exactly the speculation's result and writes.
    pub(crate) fn holds_on(&self, state: &StateDb) -> bool {
        self.accounts.iter().all(|(address, seen)| state.account(address).map(AccountView::of) == *seen)
            && self.slots.iter().all(|(address, slot, seen)| state.storage_at(address, *slot) == *seen)
    }
}

/// A storage slot as this shard's transactions left it.
#[derive(Clone, Copy, Debug)]
struct SlotWrite {
    value: U256,
    /// The window position of the first transaction that changed it.
    first_writer: usize,
}

/// An account as this shard's earlier transactions left it, and which of them
/// first changed it.
#[derive(Debug, Default)]
struct OverlayAccount {
    /// `None`: removed.
    info: Option<AccountView>,
    storage: U256Map<SlotWrite>,
    /// Storage below `storage` is empty rather than the base's (created or removed).
    storage_cleared: bool,
    /// The window position of the first transaction that changed the
    /// account's nonce, balance or code (or removed it), and that first
    /// cleared its storage.
    info_first_writer: Option<usize>,
    cleared_first_writer: Option<usize>,
}

/// The shard's own writes in this window, over the base state.
#[derive(Debug, Default)]
struct Overlay {
    accounts: AddressMap<OverlayAccount>,
    codes: B256Map<Bytecode>,
}

impl Overlay {
    /// Whether a transaction at window position `position` read a value that
    /// this overlay's transactions changed before it.
    fn changed_before(&self, reads: &ReadSet, position: usize) -> bool {
        let before = |writer: Option<usize>| writer.is_some_and(|writer| writer < position);
        reads
            .accounts
            .iter()
            .any(|(address, _)| self.accounts.get(address).is_some_and(|account| before(account.info_first_writer)))
            || reads.slots.iter().any(|(address, slot, _)| {
                self.accounts.get(address).is_some_and(|account| {
                    before(account.cleared_first_writer)
                        || before(account.storage.get(slot).map(|write| write.first_writer))
                })
            })
    }
}

/// The database a shard's EVM reads: overlay first, then the base state; every
/// read recorded, except the beneficiary's load to be paid its fee.
#[derive(Debug)]
struct ShardDb<'a> {
    base: &'a StateDb,
    /// This shard's own copies of the code it ran (see `CodeCache`).
    codes: &'a mut CodeCache,
    overlay: &'a mut Overlay,
    reads: ReadSet,
    beneficiary: Address,
    /// Whether a transaction read the beneficiary other than to pay it.
    reads_beneficiary: bool,
    paying_beneficiary: bool,
    /// The beneficiary's balance as loaded to pay it, when the transaction had
    /// not read the beneficiary before: the fee is then credited at commit.
    reward_base: Option<U256>,
}

/// A shard's private copies of contract code. revm clones code (an `Arc`)
/// several times per call: on one shared copy, shards on different cores
/// would fight over its reference count's cache line on every transaction.
/// Code is content-addressed, so a copy never goes stale.
#[derive(Debug, Default)]
pub(crate) struct CodeCache(B256Map<Bytecode>);

impl CodeCache {
    fn get_or_copy(&mut self, code_hash: &B256, base: &StateDb) -> Option<Bytecode> {
        if let Some(code) = self.0.get(code_hash) {
            return Some(code.clone());
        }
        let shared = base.code(code_hash)?;
        if self.0.len() >= SHARD_CODE_CACHE_MAX {
            self.0.clear();
        }
        let copy = Bytecode::new_raw(Bytes::copy_from_slice(shared.original_byte_slice()));
        self.0.insert(*code_hash, copy.clone());
        Some(copy)
    }
}

impl<'a> ShardDb<'a> {
    fn new(base: &'a StateDb, codes: &'a mut CodeCache, overlay: &'a mut Overlay, beneficiary: Address) -> Self {
        Self {
            base,
            codes,
            overlay,
            reads: ReadSet::default(),
            beneficiary,
            reads_beneficiary: false,
            paying_beneficiary: false,
            reward_base: None,
        }
    }

    fn view(&self, address: &Address) -> Option<AccountView> {
        match self.overlay.accounts.get(address) {
            Some(account) => account.info,
            None => self.base.account(address).map(AccountView::of),
        }
    }

    /// Folds one transaction's changes into the overlay, with the rules
    /// `StateDb::apply` follows, noting the first writer of each change, and
    /// drops the accounts it touched without changing them: committed as they
    /// are, they would write back the values this shard read over what
    /// another shard may have written since.
    fn absorb(&mut self, changes: &mut EvmState, spec: SpecId, position: usize) {
        changes.retain(|address, change| self.absorb_account(*address, change, spec, position));
    }

    /// Folds one account's change in; whether it changed anything.
    fn absorb_account(&mut self, address: Address, change: &EvmAccount, spec: SpecId, position: usize) -> bool {
        let effect = Effect::of(change, spec);
        if effect == Effect::Untouched {
            return false;
        }
        let before = self.view(&address);
        if effect == Effect::Remove {
            if before.is_none() {
                return false;
            }
            let account = self.overlay.accounts.entry(address).or_default();
            account.info_first_writer.get_or_insert(position);
            account.cleared_first_writer.get_or_insert(position);
            account.info = None;
            account.storage.clear();
            account.storage_cleared = true;
            return true;
        }
        let after =
            AccountView { nonce: change.info.nonce, balance: change.info.balance, code_hash: change.info.code_hash };
        let clears = effect == (Effect::Write { clear_storage: true });
        let writes_slots = change.storage.values().any(|slot| slot.is_changed());
        if before == Some(after) && !clears && !writes_slots {
            return false;
        }
        let account = self.overlay.accounts.entry(address).or_default();
        if clears {
            account.storage.clear();
            account.storage_cleared = true;
            account.cleared_first_writer.get_or_insert(position);
        }
        if before != Some(after) {
            account.info_first_writer.get_or_insert(position);
        }
        account.info = Some(after);
        if let Some(code) = change.info.code.as_ref().filter(|_| change.info.code_hash != KECCAK_EMPTY) {
            self.overlay.codes.entry(change.info.code_hash).or_insert_with(|| code.clone());
        }
        for (slot, value) in &change.storage {
            if value.is_changed() {
                let first_writer = account.storage.get(slot).map_or(position, |write| write.first_writer);
                account.storage.insert(*slot, SlotWrite { value: value.present_value, first_writer });
            }
        }
        true
    }

    fn code(&mut self, code_hash: &B256) -> Option<Bytecode> {
        match self.overlay.codes.get(code_hash) {
            Some(code) => Some(code.clone()),
            None => self.codes.get_or_copy(code_hash, self.base),
        }
    }
}

impl RewardAware for ShardDb<'_> {
    fn set_paying_beneficiary(&mut self, paying: bool) {
        self.paying_beneficiary = paying;
    }
}

impl Database for ShardDb<'_> {
    type Error = core::convert::Infallible;

    fn basic(&mut self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        let view = self.view(&address);
        // revm loads an account from the database once per transaction: a load
        // while paying means the transaction itself never read the beneficiary.
        if self.paying_beneficiary && address == self.beneficiary {
            self.reward_base = Some(view.map_or(U256::ZERO, |v| v.balance));
        } else {
            self.reads_beneficiary |= address == self.beneficiary;
            self.reads.accounts.push((address, view));
        }
        Ok(view.map(|v| AccountInfo {
            balance: v.balance,
            nonce: v.nonce,
            code_hash: v.code_hash,
            code: self.code(&v.code_hash),
            // Not `..Default::default()`: it clones a process-wide static.
            account_id: None,
        }))
    }

    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        Ok(self.code(&code_hash).unwrap_or_default())
    }

    fn storage(&mut self, address: Address, slot: U256) -> Result<U256, Self::Error> {
        let value = match self.overlay.accounts.get(&address) {
            Some(account) => match account.storage.get(&slot) {
                Some(write) => write.value,
                None if account.storage_cleared || account.info.is_none() => U256::ZERO,
                None => self.base.storage_at(&address, slot),
            },
            None => self.base.storage_at(&address, slot),
        };
        self.reads.slots.push((address, slot, value));
        Ok(value)
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, Self::Error> {
        // Fixed for the whole block: not a dependency.
        self.base.block_hash_ref(number)
    }
}

/// One transaction executed speculatively.
#[derive(Debug)]
pub(crate) struct Speculation {
    /// Taken by the commit; the rest is dropped by the shard that made it, as
    /// its next window starts (a free on another core costs more).
    pub(crate) result: Option<Result<ExecutionResult<HaltReason>, Reject>>,
    /// Every account it changed (and no account it only touched without
    /// changing it), the beneficiary excepted when `fee` is set.
    pub(crate) changes: EvmState,
    pub(crate) reads: ReadSet,
    /// Set when the transaction touched the beneficiary only to pay it: the fee
    /// to credit at commit, on top of whatever the beneficiary holds then.
    pub(crate) fee: Option<U256>,
}

impl Speculation {
    /// The outcome, for the commit to take once.
    pub(crate) fn take_result(&mut self) -> Result<ExecutionResult<HaltReason>, Reject> {
        self.result.take().expect("a speculation's result is taken once, by its commit")
    }
}

/// One shard's share of a window and what it made of it.
#[derive(Debug, Default)]
pub(crate) struct ShardWork {
    /// Window positions of its transactions, in sequence order.
    pub(crate) positions: Vec<usize>,
    /// One per position, in the same order.
    pub(crate) speculations: Vec<Speculation>,
    codes: CodeCache,
    overlay: Overlay,
    reads_beneficiary: bool,
}

impl ShardWork {
    /// Ready to be routed a new window. The last window's speculations stay
    /// until `speculate` drops them on this shard's own thread.
    pub(crate) fn clear_positions(&mut self) {
        self.positions.clear();
    }

    /// Executes `txs[p]` for each of its positions `p`, in order, on `base`
    /// plus the shard's own writes.
    pub(crate) fn speculate(
        &mut self,
        base: &StateDb,
        block: &BlockParams,
        txs: &impl core::ops::Index<usize, Output = VerifiedTx>,
    ) {
        self.speculations.clear();
        self.overlay.accounts.clear();
        self.overlay.codes.clear();
        let db = ShardDb::new(base, &mut self.codes, &mut self.overlay, block.beneficiary);
        let mut vm = evm::speculative_evm(db, block);
        for &position in &self.positions {
            let (result, mut changes) = evm::speculate(&mut vm, &txs[position]);
            let db = evm::speculative_db(&mut vm);
            let fee = db.reward_base.take().map(|before| {
                let after = changes.remove(&db.beneficiary).map_or(before, |paid| paid.info.balance);
                after.saturating_sub(before)
            });
            db.absorb(&mut changes, block.spec, position);
            self.speculations.push(Speculation {
                result: Some(result),
                changes,
                reads: core::mem::take(&mut db.reads),
                fee,
            });
        }
        self.reads_beneficiary = evm::speculative_db(&mut vm).reads_beneficiary;
    }

    /// Whether none of this shard's transactions read a value that another
    /// shard of `shards` (this one among them) changed earlier, nor read the beneficiary (whose
    /// balance every fee changes). Then every speculation of the window holds
    /// as it is, and their writes touch disjoint keys.
    pub(crate) fn independent_of(&self, shards: &[ShardWork]) -> bool {
        let others = || shards.iter().filter(|other| !core::ptr::eq(*other, self));
        !self.reads_beneficiary
            && self.positions.iter().zip(&self.speculations).all(|(&position, speculation)| {
                others().all(|other| !other.overlay.changed_before(&speculation.reads, position))
            })
    }
}
