//! Random writes to a `StateDb`, for property tests of what reads it back
//! (exec's own, and the state history's): stores, credits, contracts made
//! afresh and self-destructs, over a few accounts and slots, each applied
//! through revm's commit as execution applies them.

use alloy_primitives::{Address, U256, map::AddressMap};
use proptest::prelude::*;
use revm::{
    DatabaseCommit, DatabaseRef,
    state::{Account as EvmAccount, EvmStorageSlot},
};

use crate::StateDb;

/// Accounts the writes touch, and the slots they store to; a contract made
/// afresh stores to `CREATED_SLOT`.
pub const ACCOUNTS: u8 = 12;
pub const SLOTS: u8 = 6;
pub const CREATED_SLOT: u8 = 7;

#[derive(Clone, Debug)]
pub enum StateOp {
    /// Account `a` writes slot `s` to `v` (0: removes it).
    Store(u8, u8, u8),
    Credit(u8, u8),
    /// Account `a` is created afresh: its storage starts from empty.
    Create(u8),
    SelfDestruct(u8),
    /// No write: a point where a test looks (a root, a diff handed over).
    Look,
}

pub fn address(a: u8) -> Address {
    Address::with_last_byte(a % ACCOUNTS)
}

/// Every slot a write may have stored to.
pub fn slots() -> impl Iterator<Item = U256> {
    (0..SLOTS).chain([CREATED_SLOT]).map(U256::from)
}

pub fn op() -> impl Strategy<Value = StateOp> {
    prop_oneof![
        6 => (any::<u8>(), 0..SLOTS, 0u8..4).prop_map(|(a, s, v)| StateOp::Store(a, s, v)),
        3 => (any::<u8>(), 1u8..).prop_map(|(a, v)| StateOp::Credit(a, v)),
        1 => any::<u8>().prop_map(StateOp::Create),
        1 => any::<u8>().prop_map(StateOp::SelfDestruct),
        2 => Just(StateOp::Look),
    ]
}

/// revm's report of `address` as it is now, touched, with `edit` made,
/// committed.
fn commit(state: &mut StateDb, address: Address, edit: impl FnOnce(&mut EvmAccount)) {
    let mut change =
        EvmAccount::from(state.basic_ref(address).unwrap_or_else(|never| match never {}).unwrap_or_default());
    change.mark_touch();
    edit(&mut change);
    state.commit(AddressMap::from_iter([(address, change)]));
}

pub fn apply(state: &mut StateDb, op: &StateOp) {
    match *op {
        StateOp::Store(a, s, v) => {
            let (address, slot) = (address(a), U256::from(s));
            let old = state.storage_at(&address, slot);
            commit(state, address, |c| {
                c.info.nonce += 1;
                c.storage.insert(slot, EvmStorageSlot::new_changed(old, U256::from(v), 0));
            });
        }
        StateOp::Credit(a, v) => state.add_balance(address(a), U256::from(v)),
        StateOp::Create(a) => commit(state, address(a), |c| {
            c.mark_created();
            c.info.nonce = 1;
            c.storage.insert(U256::from(CREATED_SLOT), EvmStorageSlot::new_changed(U256::ZERO, U256::from(9), 0));
        }),
        StateOp::SelfDestruct(a) => commit(state, address(a), EvmAccount::mark_selfdestruct),
        StateOp::Look => {}
    }
}
