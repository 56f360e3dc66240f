//! The store against the state it records: blocks of random writes on an
//! exec `StateDb`, each block's reverse changes appended; the state at every
//! earlier block read back through the store equals a copy taken then,
//! across a reopen, a truncation and pruning.

use alloy_primitives::Address;
use proptest::prelude::*;
use revm::primitives::hardfork::SpecId;
use tephra_exec::{
    AccountBefore, StateDb,
    testing::{ACCOUNTS, StateOp, address, apply, op, slots},
};
use tephra_history::{HistoryError, HistoryStore, Stored};

const CACHE_BYTES: usize = 1 << 20;

fn fields(state: &StateDb, address: &Address) -> Option<AccountBefore> {
    state.account(address).map(|a| AccountBefore { nonce: a.nonce, balance: a.balance, code_hash: a.code_hash })
}

/// Every key at block `k` read back through `store` and the state now
/// equals `then`.
fn reads_back(store: &HistoryStore, now: &StateDb, k: u64, then: &StateDb) -> Result<(), TestCaseError> {
    let reader = store.reader().unwrap();
    for a in 0..ACCOUNTS {
        let address = address(a);
        let account = reader.account_after(&address, k).unwrap().unwrap_or_else(|| fields(now, &address));
        prop_assert_eq!(account, fields(then, &address), "block {} account {}", k, address);
        for slot in slots() {
            let value = reader.slot_after(&address, slot, k).unwrap().unwrap_or_else(|| now.storage_at(&address, slot));
            prop_assert_eq!(value, then.storage_at(&address, slot), "block {} {} slot {}", k, address, slot);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_earlier_state_reads_back_through_the_store(
        blocks in proptest::collection::vec(proptest::collection::vec(op(), 0..16), 1..7),
        cut in any::<u8>(),
    ) {
        let dir = tephra_testkit::fresh_dir("history-store");
        let path = dir.join("history.redb");
        let mut state = StateDb::default();
        state.set_spec(SpecId::PRAGUE);
        // Block 0 is genesis: the blocks appended are 1..
        let mut states = vec![state.clone()];
        {
            let store = HistoryStore::open(&path, CACHE_BYTES).unwrap();
            state.keep_block_changes();
            for (i, ops) in blocks.iter().enumerate() {
                ops.iter().for_each(|op| apply(&mut state, op));
                store.append(i as u64 + 1, &state.take_block_changes().expect("keeping"), i % 2 == 1).unwrap();
                states.push(state.clone());
            }
        }
        let head = blocks.len() as u64;
        let store = HistoryStore::open(&path, CACHE_BYTES).unwrap();
        prop_assert_eq!(store.stored().unwrap(), Some(Stored { first: 1, last: head }));
        for (k, then) in states.iter().enumerate() {
            reads_back(&store, &state, k as u64, then)?;
        }
        changing_blocks_are_found(&store, &blocks, &states)?;

        // Truncated back to block t: the chain as it was then reads back.
        let t = usize::from(cut) % (blocks.len() + 1);
        store.truncate_after(t as u64).unwrap();
        let now = &states[t];
        for (k, then) in states.iter().enumerate().take(t + 1) {
            reads_back(&store, now, k as u64, then)?;
        }
        // Pruned below p: the blocks from p on still read back.
        let p = t / 2;
        store.prune_below(p as u64 + 1, u64::MAX).unwrap();
        let left = store.stored().unwrap();
        prop_assert_eq!(left, (p < t).then_some(Stored { first: p as u64 + 1, last: t as u64 }));
        for (k, then) in states.iter().enumerate().take(t + 1).skip(p) {
            reads_back(&store, now, k as u64, then)?;
        }
    }
}

/// The blocks the store says changed an address: every block that changed
/// its account or storage, and none whose writes did not name it.
fn changing_blocks_are_found(
    store: &HistoryStore,
    blocks: &[Vec<StateOp>],
    states: &[StateDb],
) -> Result<(), TestCaseError> {
    let reader = store.reader().unwrap();
    let head = blocks.len() as u64;
    for a in 0..ACCOUNTS {
        let address = address(a);
        let found = reader.blocks_changing(&address, 1, head).unwrap();
        for (i, ops) in blocks.iter().enumerate() {
            let k = i as u64 + 1;
            let (before, after) = (&states[i], &states[i + 1]);
            let changed = fields(before, &address) != fields(after, &address)
                || slots().any(|slot| before.storage_at(&address, slot) != after.storage_at(&address, slot));
            let named = ops.iter().any(|op| op_address(op) == Some(address));
            if changed {
                prop_assert!(found.contains(&k), "block {} changed {} and is not found: {:?}", k, address, found);
            }
            if !named {
                prop_assert!(!found.contains(&k), "block {} never wrote {}: {:?}", k, address, found);
            }
        }
        let (from, to) = (head / 2, head);
        let ranged = reader.blocks_changing(&address, from, to).unwrap();
        prop_assert_eq!(ranged, found.iter().copied().filter(|k| (from..=to).contains(k)).collect::<Vec<_>>());
    }
    Ok(())
}

fn op_address(op: &StateOp) -> Option<Address> {
    match *op {
        StateOp::Store(a, ..) | StateOp::Credit(a, _) | StateOp::Create(a) | StateOp::SelfDestruct(a) => {
            Some(address(a))
        }
        StateOp::Look => None,
    }
}

#[test]
fn a_store_of_another_layout_is_refused_naming_it() {
    let dir = tephra_testkit::fresh_dir("history-format");
    let path = dir.join("history.redb");
    {
        // A store as the first layout left it: blocks, and no layout recorded.
        let store = HistoryStore::open(&path, CACHE_BYTES).unwrap();
        store.append(1, &Default::default(), true).unwrap();
        drop(store);
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<&str, u64>::new("meta")).unwrap().remove("format").unwrap();
        txn.commit().unwrap();
    }
    let refused = HistoryStore::open(&path, CACHE_BYTES).unwrap_err();
    assert!(matches!(refused, HistoryError::Format { found: 1, .. }), "{refused}");
    assert!(refused.to_string().contains("remove it to rebuild it"), "{refused}");
}

#[test]
fn blocks_are_appended_in_order_only() {
    let dir = tephra_testkit::fresh_dir("history-order");
    let store = HistoryStore::open(&dir.join("history.redb"), CACHE_BYTES).unwrap();
    store.append(5, &Default::default(), true).unwrap();
    store.append(6, &Default::default(), true).unwrap();
    let refused = store.append(8, &Default::default(), true).unwrap_err();
    assert!(matches!(refused, HistoryError::NotNext { number: 8, last: 6, .. }), "{refused}");
    assert_eq!(store.stored().unwrap(), Some(Stored { first: 5, last: 6 }));
    assert_eq!(store.prune_below(6, 10).unwrap(), 1);
    assert_eq!(store.truncate_after(2).unwrap(), 1);
    assert_eq!(store.stored().unwrap(), None);
    store.append(9, &Default::default(), true).unwrap();
    assert_eq!(store.stored().unwrap(), Some(Stored { first: 9, last: 9 }));
}
