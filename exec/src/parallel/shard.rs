//! One shard's speculative view of the state: the window's starting state,
//! the shard's own writes so far, and a record of every value read.

use alloy_primitives::{
    Address, B256, U256,
    map::{AddressMap, B256Map, U256Map},
};
use revm::{
    Database, DatabaseRef,
    bytecode::Bytecode,
    context_interface::result::{ExecutionResult, HaltReason},
    primitives::{KECCAK_EMPTY, hardfork::SpecId},
    state::{AccountInfo, EvmState},
};
use tephra_types::Reject;

use crate::{
    block::BlockParams,
    evm::{self, RewardAware},
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

/// An account as this shard's earlier transactions left it.
#[derive(Debug, Default)]
struct OverlayAccount {
    /// `None`: removed.
    info: Option<AccountView>,
    storage: U256Map<U256>,
    /// Storage below `storage` is empty rather than the base's (created or removed).
    storage_cleared: bool,
}

/// The shard's own writes in this window, over the base state.
#[derive(Debug, Default)]
struct Overlay {
    accounts: AddressMap<OverlayAccount>,
    codes: B256Map<Bytecode>,
}

impl Overlay {
    /// Folds one transaction's changes in, with the rules `StateDb::apply` follows.
    fn apply(&mut self, changes: &EvmState, spec: SpecId) {
        for (address, change) in changes {
            let clear_storage = match Effect::of(change, spec) {
                Effect::Untouched => continue,
                Effect::Remove => {
                    let account = self.accounts.entry(*address).or_default();
                    *account = OverlayAccount { info: None, storage: U256Map::default(), storage_cleared: true };
                    continue;
                }
                Effect::Write { clear_storage } => clear_storage,
            };
            let account = self.accounts.entry(*address).or_default();
            if clear_storage {
                account.storage.clear();
                account.storage_cleared = true;
            }
            account.info = Some(AccountView {
                nonce: change.info.nonce,
                balance: change.info.balance,
                code_hash: change.info.code_hash,
            });
            if let Some(code) = change.info.code.as_ref().filter(|_| change.info.code_hash != KECCAK_EMPTY) {
                self.codes.entry(change.info.code_hash).or_insert_with(|| code.clone());
            }
            for (slot, value) in &change.storage {
                if value.is_changed() {
                    account.storage.insert(*slot, value.present_value);
                }
            }
        }
    }
}

/// The database a shard's EVM reads: overlay first, then the base state; every
/// read recorded, except the beneficiary's load to be paid its fee.
#[derive(Debug)]
pub(crate) struct ShardDb<'a> {
    base: &'a StateDb,
    overlay: Overlay,
    reads: ReadSet,
    beneficiary: Address,
    paying_beneficiary: bool,
    /// The beneficiary's balance as loaded to pay it, when the transaction had
    /// not read the beneficiary before: the fee is then credited at commit.
    reward_base: Option<U256>,
}

impl<'a> ShardDb<'a> {
    fn new(base: &'a StateDb, beneficiary: Address) -> Self {
        Self {
            base,
            overlay: Overlay::default(),
            reads: ReadSet::default(),
            beneficiary,
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

    fn code(&self, code_hash: &B256) -> Option<Bytecode> {
        self.overlay.codes.get(code_hash).or_else(|| self.base.code(code_hash)).cloned()
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
            self.reads.accounts.push((address, view));
        }
        Ok(view.map(|v| AccountInfo {
            balance: v.balance,
            nonce: v.nonce,
            code_hash: v.code_hash,
            code: self.code(&v.code_hash),
            ..Default::default()
        }))
    }

    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        Ok(self.code(&code_hash).unwrap_or_default())
    }

    fn storage(&mut self, address: Address, slot: U256) -> Result<U256, Self::Error> {
        let value = match self.overlay.accounts.get(&address) {
            Some(account) => match account.storage.get(&slot) {
                Some(value) => *value,
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
    pub(crate) result: Result<ExecutionResult<HaltReason>, Reject>,
    /// Every account it changed, the beneficiary excepted when `fee` is set.
    pub(crate) changes: EvmState,
    pub(crate) reads: ReadSet,
    /// Set when the transaction touched the beneficiary only to pay it: the fee
    /// to credit at commit, on top of whatever the beneficiary holds then.
    pub(crate) fee: Option<U256>,
}

/// Executes `txs[i]` for each `i` of `indices`, in order, on `base` plus the
/// shard's own writes, and pushes one speculation per transaction to `out`.
pub(crate) fn speculate_shard(
    base: &StateDb,
    block: &BlockParams,
    txs: &impl core::ops::Index<usize, Output = VerifiedTx>,
    indices: &[usize],
    out: &mut Vec<Speculation>,
) {
    let mut vm = evm::speculative_evm(ShardDb::new(base, block.beneficiary), block);
    for &index in indices {
        let (result, mut changes) = evm::speculate(&mut vm, &txs[index]);
        let db = evm::db_of(&mut vm);
        let fee = db.reward_base.take().map(|before| {
            let after = changes.remove(&db.beneficiary).map_or(before, |paid| paid.info.balance);
            after.saturating_sub(before)
        });
        db.overlay.apply(&changes, block.spec);
        out.push(Speculation { result, changes, reads: core::mem::take(&mut db.reads), fee });
    }
}
