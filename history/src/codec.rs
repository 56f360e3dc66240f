//! A block's reverse changes as one record (the `blocks` table): what its
//! index entries are, so that pruning and truncating can remove them.
//!
//! ```text
//! u64 accounts, each: address (20) | 0 (did not exist) or 1, nonce (u64), balance (32), code hash (32)
//! u64 storages, each: address (20) | wiped (0 or 1) | u64 slots, each: slot (32), value (32)
//! ```
//! Integers big-endian. A record that does not decode whole is corrupt.

use alloy_primitives::{Address, B256, U256};
#[cfg(test)]
use tephra_exec::SortedChanges;
use tephra_exec::{AccountBefore, BlockChanges, StorageBeforeBlock};

pub(crate) const ACCOUNT_BYTES: usize = 8 + 32 + 32;

pub(crate) fn encode_account(account: &AccountBefore) -> [u8; ACCOUNT_BYTES] {
    let mut out = [0; ACCOUNT_BYTES];
    out[..8].copy_from_slice(&account.nonce.to_be_bytes());
    out[8..40].copy_from_slice(&account.balance.to_be_bytes::<32>());
    out[40..].copy_from_slice(account.code_hash.as_slice());
    out
}

pub(crate) fn decode_account(bytes: &[u8]) -> Option<AccountBefore> {
    let bytes: &[u8; ACCOUNT_BYTES] = bytes.try_into().ok()?;
    Some(AccountBefore {
        nonce: u64::from_be_bytes(bytes[..8].try_into().ok()?),
        balance: U256::from_be_slice(&bytes[8..40]),
        code_hash: B256::from_slice(&bytes[40..]),
    })
}

/// The record of `accounts` and `storage`, as `BlockChanges::sorted` lists them.
pub(crate) fn encode(
    accounts: &[(Address, Option<AccountBefore>)],
    storage: &[(Address, StorageBeforeBlock)],
) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(accounts.len() as u64).to_be_bytes());
    for (address, before) in accounts {
        out.extend_from_slice(address.as_slice());
        match before {
            None => out.push(0),
            Some(account) => {
                out.push(1);
                out.extend_from_slice(&encode_account(account));
            }
        }
    }
    out.extend_from_slice(&(storage.len() as u64).to_be_bytes());
    for (address, before) in storage {
        out.extend_from_slice(address.as_slice());
        out.push(u8::from(before.wiped));
        out.extend_from_slice(&(before.slots.len() as u64).to_be_bytes());
        for (slot, value) in &before.slots {
            out.extend_from_slice(&slot.to_be_bytes::<32>());
            out.extend_from_slice(&value.to_be_bytes::<32>());
        }
    }
    out
}

/// The record, or `None` if it is not one whole.
pub(crate) fn decode(bytes: &[u8]) -> Option<BlockChanges> {
    let mut reader = Reader(bytes);
    let (mut accounts, mut storage) = (Vec::new(), Vec::new());
    for _ in 0..reader.u64()? {
        let address = Address::from_slice(reader.take(20)?);
        let before = match reader.take(1)?[0] {
            0 => None,
            1 => Some(decode_account(reader.take(ACCOUNT_BYTES)?)?),
            _ => return None,
        };
        accounts.push((address, before));
    }
    for _ in 0..reader.u64()? {
        let address = Address::from_slice(reader.take(20)?);
        let wiped = match reader.take(1)?[0] {
            0 => false,
            1 => true,
            _ => return None,
        };
        let count = reader.u64()?;
        // Each slot takes 64 bytes: a count beyond what is left is corrupt,
        // and is refused before anything is allocated for it.
        if usize::try_from(count).ok()?.checked_mul(64)? > reader.0.len() {
            return None;
        }
        let mut slots = Vec::new();
        for _ in 0..count {
            let slot = U256::from_be_slice(reader.take(32)?);
            slots.push((slot, U256::from_be_slice(reader.take(32)?)));
        }
        storage.push((address, StorageBeforeBlock { wiped, slots }));
    }
    reader.0.is_empty().then(|| BlockChanges::from_parts(accounts, storage))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn changes() -> impl Strategy<Value = BlockChanges> {
        let account = proptest::option::of((any::<u64>(), any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(
            |(nonce, balance, code_hash)| AccountBefore {
                nonce,
                balance: U256::from_be_bytes(balance),
                code_hash: B256::from(code_hash),
            },
        ));
        let slots = proptest::collection::vec((any::<[u8; 32]>(), any::<[u8; 32]>()), 0..4).prop_map(|slots| {
            slots.into_iter().map(|(s, v)| (U256::from_be_bytes(s), U256::from_be_bytes(v))).collect()
        });
        let storage = (any::<bool>(), slots).prop_map(|(wiped, slots)| StorageBeforeBlock { wiped, slots });
        (
            proptest::collection::vec((any::<[u8; 20]>().prop_map(Address::from), account), 0..5),
            proptest::collection::vec((any::<[u8; 20]>().prop_map(Address::from), storage), 0..5),
        )
            .prop_map(|(accounts, storage)| {
                // One entry per address, as a block's changes have.
                let accounts: std::collections::BTreeMap<_, _> = accounts.into_iter().collect();
                let storage: std::collections::BTreeMap<_, _> = storage.into_iter().collect();
                BlockChanges::from_parts(accounts.into_iter().collect(), storage.into_iter().collect())
            })
    }

    proptest! {
        #[test]
        fn a_record_decodes_to_what_was_encoded(changes in changes()) {
            let SortedChanges { accounts, storage } = changes.sorted();
            prop_assert_eq!(decode(&encode(&accounts, &storage)), Some(changes));
        }

        #[test]
        fn a_cut_or_lengthened_record_is_refused_not_misread(changes in changes(), cut in any::<usize>(), extra in any::<u8>()) {
            let SortedChanges { accounts, storage } = changes.sorted();
            let bytes = encode(&accounts, &storage);
            let at = cut % bytes.len().max(1);
            if at < bytes.len() {
                prop_assert_eq!(decode(&bytes[..at]), None);
            }
            let mut longer = bytes.clone();
            longer.push(extra);
            prop_assert_eq!(decode(&longer), None);
        }

        #[test]
        fn any_bytes_decode_or_are_refused_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }
    }
}
