//! The chain a log holds once its rewinds are applied: a `Rewind` record
//! abandons the blocks above its target, so the records of those blocks
//! before it are not the chain's, and the user transactions they held wait
//! to be sequenced again.
//!
//! ```text
//!  Open 5 · Batch 5 · Sealed 5 · Open 6 · Batch 6 · Sealed 6 · Open 7 · Batch 7 · Rewind 5 · Open 6' · ...
//!  ──────────── kept ─────────── ───────────── abandoned (txs of Batch 6, 7) ─────────────  ─ kept ─
//! ```
//!
//! Invariants: a rewind names a sealed block of the chain (or genesis, 0)
//! by its hash; a signature is kept only for a block of the chain; an
//! abandoned transaction is listed once, in the order it was first
//! sequenced, and only if no kept block holds it.

use alloy_primitives::{Address, B256, Bytes, keccak256, map::B256Set};
use std::collections::BTreeMap;

use crate::Record;

/// The chain's records and the transactions its rewinds abandoned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chain {
    /// The log's records without the abandoned blocks' and without the
    /// rewinds, in log order.
    pub records: Vec<Record>,
    /// Abandoned user transactions (sender, EIP-2718 bytes) that no kept
    /// block holds, in the order they were first sequenced.
    pub abandoned: Vec<(Address, Bytes)>,
    /// How many rewinds the log held.
    pub rewinds: usize,
}

impl Chain {
    /// The hash of the chain's sealed block `number`, if the records hold it.
    pub fn sealed_hash(&self, number: u64) -> Option<B256> {
        self.records.iter().rev().find_map(|record| match record {
            Record::Sealed { number: n, header_rlp, .. } if *n == number => Some(keccak256(header_rlp)),
            _ => None,
        })
    }
}

/// A rewind the log cannot apply: its target is not a sealed block of the
/// chain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a rewind to block {number} {hash}, which the chain does not hold")]
pub struct RewindError {
    pub number: u64,
    pub hash: B256,
}

/// The block a record belongs to; None for a record of no block.
fn block_of(record: &Record) -> Option<u64> {
    match record {
        Record::Open(open) => Some(open.number),
        Record::Batch { number, .. } | Record::Sealed { number, .. } | Record::Signed { number, .. } => Some(*number),
        Record::Epoch { .. } | Record::Rewind { .. } => None,
    }
}

/// Applies every rewind of `records`; see the module comment.
pub fn chain_of(records: Vec<Record>) -> Result<Chain, RewindError> {
    let mut chain = Chain::default();
    // The kept sealed blocks' hashes by number.
    let mut sealed = BTreeMap::<u64, B256>::new();
    let mut abandoned = Vec::new();
    for record in records {
        match record {
            Record::Rewind { number, hash } => {
                if number != 0 && sealed.get(&number) != Some(&hash) {
                    return Err(RewindError { number, hash });
                }
                sealed.split_off(&(number + 1));
                for record in std::mem::take(&mut chain.records) {
                    match record {
                        Record::Batch { number: n, txs } if n > number => abandoned.extend(txs),
                        record if block_of(&record).is_some_and(|n| n > number) => {}
                        record => chain.records.push(record),
                    }
                }
                chain.rewinds += 1;
            }
            Record::Signed { number, hash, .. } if sealed.get(&number) != Some(&hash) => {}
            Record::Sealed { number, ref header_rlp, .. } => {
                sealed.insert(number, keccak256(header_rlp));
                chain.records.push(record);
            }
            record => chain.records.push(record),
        }
    }
    let mut listed: B256Set = chain
        .records
        .iter()
        .filter_map(|r| if let Record::Batch { txs, .. } = r { Some(txs) } else { None })
        .flatten()
        .map(|(_, raw)| keccak256(raw))
        .collect();
    chain.abandoned = abandoned.into_iter().filter(|(_, raw)| listed.insert(keccak256(raw))).collect();
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{OpenRecord, fixtures::samples};

    fn open(number: u64) -> Record {
        let Record::Open(open) = samples().remove(0) else { unreachable!("the first sample opens") };
        Record::Open(OpenRecord { number, ..open })
    }

    fn tx(byte: u8) -> (Address, Bytes) {
        (Address::repeat_byte(byte), Bytes::from(vec![byte; 3]))
    }

    fn batch(number: u64, txs: &[u8]) -> Record {
        Record::Batch { number, txs: txs.iter().map(|b| tx(*b)).collect() }
    }

    fn sealed(number: u8) -> (Record, B256) {
        let header_rlp = Bytes::from(vec![0xc1, number]);
        let hash = keccak256(&header_rlp);
        (Record::Sealed { number: u64::from(number), header_rlp, receipts: Vec::new() }, hash)
    }

    fn signed(number: u64, hash: B256) -> Record {
        Record::Signed { number, hash, signature: [1; 65] }
    }

    #[test]
    fn a_log_without_rewinds_is_its_chain_but_for_a_signature_of_no_block_of_it() {
        let mut records = samples();
        let chain = chain_of(records.clone()).unwrap();
        // The sample signature's hash is not its sealed block's.
        assert!(matches!(records.pop(), Some(Record::Signed { .. })));
        assert_eq!(chain, Chain { records, abandoned: Vec::new(), rewinds: 0 });
    }

    #[test]
    fn a_rewind_drops_the_blocks_above_it_and_lists_their_transactions_once() {
        let (sealed1, hash1) = sealed(1);
        let (sealed2, hash2) = sealed(2);
        // A rebuilt block 2: another header.
        let (_, hash2b) = sealed(3);
        let records = vec![
            open(1),
            batch(1, &[1]),
            sealed1.clone(),
            signed(1, hash1),
            open(2),
            batch(2, &[2, 3]),
            sealed2,
            open(3),
            batch(3, &[4]),
            Record::Epoch { epoch: 2 },
            Record::Rewind { number: 1, hash: hash1 },
            // The abandoned block 2's signature, made after the rewind.
            signed(2, hash2),
            open(2),
            batch(2, &[3]),
            // A rebuilt block 2 (another header), signed.
            Record::Sealed { number: 2, header_rlp: Bytes::from(vec![0xc1, 3]), receipts: Vec::new() },
            signed(2, hash2b),
        ];
        let chain = chain_of(records).unwrap();
        assert_eq!(
            chain.records,
            vec![
                open(1),
                batch(1, &[1]),
                sealed1,
                signed(1, hash1),
                Record::Epoch { epoch: 2 },
                open(2),
                batch(2, &[3]),
                Record::Sealed { number: 2, header_rlp: Bytes::from(vec![0xc1, 3]), receipts: Vec::new() },
                signed(2, hash2b),
            ]
        );
        // Transaction 3 is in the rebuilt block: only 2 and 4 wait.
        assert_eq!(chain.abandoned, vec![tx(2), tx(4)]);
        assert_eq!(chain.rewinds, 1);
    }

    #[test]
    fn a_rewind_to_a_block_the_chain_does_not_hold_is_refused() {
        let (sealed1, hash1) = sealed(1);
        let wrong = B256::repeat_byte(9);
        let records = vec![open(1), sealed1, Record::Rewind { number: 1, hash: wrong }];
        assert_eq!(chain_of(records), Err(RewindError { number: 1, hash: wrong }));
        let ahead = vec![open(1), Record::Rewind { number: 1, hash: hash1 }];
        assert_eq!(chain_of(ahead), Err(RewindError { number: 1, hash: hash1 }));
    }

    #[test]
    fn a_rewind_to_genesis_abandons_every_block() {
        let (sealed1, _) = sealed(1);
        let records = vec![open(1), batch(1, &[1, 1]), sealed1, Record::Rewind { number: 0, hash: B256::ZERO }];
        let chain = chain_of(records).unwrap();
        assert!(chain.records.is_empty());
        assert_eq!(chain.abandoned, vec![tx(1)]);
    }
}
