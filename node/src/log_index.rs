//! The index eth_getLogs narrows a query with: for each log address and
//! each (topic position, topic), the kept blocks that hold one, oldest
//! first. `ChainView` owns it and keeps it in step with its kept blocks.
//!
//! ```text
//! keep(block): each distinct key of its logs ──> postings[key].push_back(number)
//! forget(oldest block): its keys              ──> postings[key].pop_front() (an empty list goes)
//! candidates(filter, from..=to): per constraint (the addresses; each topic position), the union
//!   of its keys' postings in range; then the intersection of the constraints, smallest first
//! ```
//!
//! Invariants: postings hold block numbers ascending, each once; a block's
//! number is in the postings of every key of its logs while it is kept,
//! and in no others. Keys are 64-bit hashes of what they index: two values
//! that share one only make a block a candidate that the exact match
//! (rpc/logs.rs) then passes over, never lose a log.
//!
//! Memory: one entry (8 bytes) per distinct key per block, plus a map entry
//! per distinct key kept; bounded by the kept blocks (`rpc.history_blocks_max`).

use std::{
    collections::VecDeque,
    hash::{BuildHasher, Hasher},
};

use alloy_primitives::{Address, B256, Log, map::HashMap};

/// A hashed address or (topic position, topic).
type Key = u64;

/// The index; see the module comment.
#[derive(Debug, Default)]
pub struct LogIndex {
    postings: HashMap<Key, VecDeque<u64>>,
}

/// Fixed, so that the index is the same on every run (and every node).
fn hasher() -> std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher> {
    std::hash::BuildHasherDefault::default()
}

fn address_key(address: &Address) -> Key {
    let mut h = hasher().build_hasher();
    h.write_u8(0xff);
    h.write(address.as_slice());
    h.finish()
}

fn topic_key(position: usize, topic: &B256) -> Key {
    let mut h = hasher().build_hasher();
    h.write_usize(position);
    h.write(topic.as_slice());
    h.finish()
}

/// The keys of one log.
fn keys_of(log: &Log) -> impl Iterator<Item = Key> + '_ {
    let topics = log.topics().iter().enumerate().map(|(i, t)| topic_key(i, t));
    std::iter::once(address_key(&log.address)).chain(topics)
}

impl LogIndex {
    /// Indexes block `number` (newer than every block indexed) by `logs`.
    pub fn keep<'a>(&mut self, number: u64, logs: impl IntoIterator<Item = &'a Log>) {
        for log in logs {
            for key in keys_of(log) {
                let postings = self.postings.entry(key).or_default();
                debug_assert!(postings.back().is_none_or(|last| *last <= number), "blocks are kept in order");
                if postings.back() != Some(&number) {
                    postings.push_back(number);
                }
            }
        }
    }

    /// Forgets block `number`, the oldest indexed, whose logs are `logs`.
    pub fn forget<'a>(&mut self, number: u64, logs: impl IntoIterator<Item = &'a Log>) {
        for log in logs {
            for key in keys_of(log) {
                let Some(postings) = self.postings.get_mut(&key) else { continue };
                if postings.front() == Some(&number) {
                    postings.pop_front();
                }
                if postings.is_empty() {
                    self.postings.remove(&key);
                }
            }
        }
    }

    pub fn clear(&mut self) {
        self.postings.clear();
    }

    /// The blocks in `from..=to` that may hold a log from one of
    /// `addresses` (any, if empty) with, at each topic position, one of
    /// its topics (any, if empty), ascending; `None` when the filter names
    /// nothing to narrow by.
    pub fn candidates(&self, addresses: &[Address], topics: &[Vec<B256>], from: u64, to: u64) -> Option<Vec<u64>> {
        let mut constraints = Vec::new();
        if !addresses.is_empty() {
            constraints.push(self.union(addresses.iter().map(address_key), from, to));
        }
        for (position, any) in topics.iter().enumerate().filter(|(_, any)| !any.is_empty()) {
            constraints.push(self.union(any.iter().map(|t| topic_key(position, t)), from, to));
        }
        constraints.sort_by_key(Vec::len);
        let mut constraints = constraints.into_iter();
        let mut blocks = constraints.next()?;
        for constraint in constraints {
            blocks.retain(|n| constraint.binary_search(n).is_ok());
        }
        Some(blocks)
    }

    /// The blocks in `from..=to` in the postings of any of `keys`, ascending, once each.
    fn union(&self, keys: impl Iterator<Item = Key>, from: u64, to: u64) -> Vec<u64> {
        let mut blocks = Vec::new();
        for key in keys {
            let Some(postings) = self.postings.get(&key) else { continue };
            let start = postings.partition_point(|n| *n < from);
            blocks.extend(postings.range(start..).take_while(|n| **n <= to));
        }
        blocks.sort_unstable();
        blocks.dedup();
        blocks
    }
}

#[cfg(test)]
mod tests {
    use alloy_primitives::{Bytes, LogData};
    use proptest::prelude::*;

    use super::*;

    fn log(address: u8, topics: &[u8]) -> Log {
        let topics = topics.iter().map(|t| B256::with_last_byte(*t)).collect();
        Log { address: Address::with_last_byte(address), data: LogData::new_unchecked(topics, Bytes::new()) }
    }

    /// Whether `log` matches the filter, as eth_getLogs defines it.
    fn matches(log: &Log, addresses: &[Address], topics: &[Vec<B256>]) -> bool {
        (addresses.is_empty() || addresses.contains(&log.address))
            && topics
                .iter()
                .enumerate()
                .all(|(i, any)| any.is_empty() || log.topics().get(i).is_some_and(|t| any.contains(t)))
    }

    /// A block: its logs, each an address and up to three topics, drawn
    /// from small sets so that filters match often.
    fn block() -> impl Strategy<Value = Vec<Log>> {
        let one = (0u8..6, proptest::collection::vec(0u8..5, 0..=3)).prop_map(|(a, t)| log(a, &t));
        proptest::collection::vec(one, 0..6)
    }

    fn filter() -> impl Strategy<Value = (Vec<Address>, Vec<Vec<B256>>)> {
        let addresses = proptest::collection::vec((0u8..7).prop_map(Address::with_last_byte), 0..3);
        let position = proptest::collection::vec((0u8..6).prop_map(B256::with_last_byte), 0..3);
        (addresses, proptest::collection::vec(position, 0..4))
    }

    proptest! {
        /// The candidates, narrowed by the exact match, are the blocks a
        /// scan of every kept block finds, through keeping, forgetting the
        /// oldest and rebuilding (a rewind).
        #[test]
        fn candidates_find_what_a_scan_of_every_block_finds(
            blocks in proptest::collection::vec(block(), 1..40),
            kept_max in 1usize..30,
            rebuild_at in 0usize..40,
            queries in proptest::collection::vec((filter(), 0u64..45, 0u64..45), 1..12),
        ) {
            let mut index = LogIndex::default();
            let mut kept: VecDeque<(u64, &Vec<Log>)> = VecDeque::new();
            for (number, logs) in (1u64..).zip(&blocks) {
                index.keep(number, logs);
                kept.push_back((number, logs));
                if kept.len() > kept_max {
                    let (old, logs) = kept.pop_front().unwrap();
                    index.forget(old, logs.iter());
                }
                if usize::try_from(number) == Ok(rebuild_at) {
                    index.clear();
                    for (n, logs) in &kept {
                        index.keep(*n, logs.iter());
                    }
                }
            }
            for ((addresses, topics), a, b) in queries {
                let (from, to) = (a.min(b), a.max(b));
                let scanned: Vec<u64> = kept
                    .iter()
                    .filter(|(n, logs)| (from..=to).contains(n) && logs.iter().any(|l| matches(l, &addresses, &topics)))
                    .map(|(n, _)| *n)
                    .collect();
                match index.candidates(&addresses, &topics, from, to) {
                    None => prop_assert!(addresses.is_empty() && topics.iter().all(Vec::is_empty)),
                    Some(candidates) => {
                        prop_assert!(candidates.windows(2).all(|w| w[0] < w[1]), "ascending, once each");
                        let narrowed: Vec<u64> = candidates
                            .iter()
                            .copied()
                            .filter(|n| kept.iter().any(|(k, logs)| k == n && logs.iter().any(|l| matches(l, &addresses, &topics))))
                            .collect();
                        prop_assert_eq!(&narrowed, &scanned);
                        // Each candidate holds every constraint somewhere (no
                        // hash is shared among values this few).
                        for n in &candidates {
                            let logs = kept.iter().find(|(k, _)| k == n).map(|(_, logs)| *logs).unwrap();
                            prop_assert!(addresses.is_empty() || logs.iter().any(|l| addresses.contains(&l.address)));
                        }
                    }
                }
            }
            // Every block forgotten leaves nothing behind.
            for (n, logs) in kept.drain(..) {
                index.forget(n, logs.iter());
            }
            prop_assert!(index.postings.is_empty());
        }
    }

    #[test]
    fn a_query_over_100_000_blocks_reads_only_the_blocks_that_hold_a_match() {
        const BLOCKS: u64 = 100_000;
        let mut index = LogIndex::default();
        let busy = log(1, &[7, 8]);
        for number in 1..=BLOCKS {
            // Every block has the busy contract's logs; one in ten thousand
            // has the rare one's.
            let rare = log(2, &[u8::try_from(number % 3).unwrap()]);
            let logs: Vec<&Log> = if number % 10_000 == 0 { vec![&busy, &rare] } else { vec![&busy] };
            index.keep(number, logs);
        }
        let rare = [Address::with_last_byte(2)];
        let found = index.candidates(&rare, &[], 1, BLOCKS).unwrap();
        assert_eq!(found, (1..=10).map(|i| i * 10_000).collect::<Vec<_>>());
        // Narrowed by a topic as well: only those whose topic is 1.
        let topic = [vec![B256::with_last_byte(1)]];
        let found = index.candidates(&rare, &topic, 1, BLOCKS).unwrap();
        assert_eq!(found, vec![10_000, 40_000, 70_000, 100_000]);
        // A range cuts the postings without reading the rest.
        assert_eq!(index.candidates(&rare, &[], 35_000, 65_000).unwrap(), vec![40_000, 50_000, 60_000]);
        assert_eq!(index.candidates(&[], &[], 1, BLOCKS), None, "nothing to narrow by");
    }
}
