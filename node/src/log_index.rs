//! The index eth_getLogs narrows a query with: for each log address and
//! each (topic position, topic), the kept blocks that hold one, oldest
//! first. `ChainView` owns it and keeps it in step with its kept blocks.
//!
//! ```text
//! keep(block, logs): each distinct key of its logs ──> postings[key].push_back(number)
//!   (the open block's, as they are preconfirmed: a mini-block's share of the work each)
//! retire(oldest block): no longer a candidate; queued, its keys forgotten a few at a
//!   time by forget_some (postings[key].pop_front(); an empty list goes)
//! candidates(filter, from..=to): per constraint (the addresses; each topic position), the union
//!   of its keys' postings in range; then the intersection of the constraints, smallest first
//! ```
//!
//! Invariants: postings hold block numbers ascending, each once; a block's
//! number is in the postings of every key of its logs from its first log
//! kept until it is forgotten, and in no others; a retired block is never a
//! candidate. Keys are 64-bit hashes of what they index: two values that
//! share one only make a block a candidate that the exact match
//! (rpc/logs.rs) then passes over, never lose a log.
//!
//! Cost, on the sequencer's thread under the view's lock: keeping a log and
//! its transaction's call, and later forgetting them, is about 115 ns,
//! 2.4 % of executing the token transfer that logged it (`cargo bench -p tephra-node --bench log_index`,
//! docs/benchmarks.md), spread over the mini-blocks rather than left to the
//! seal. Memory: one entry (8 bytes)
//! per distinct key per block, plus a map entry per distinct key kept;
//! bounded by the kept blocks (`rpc.history_blocks_max`) and the retired
//! blocks not yet forgotten.

use std::collections::VecDeque;

use alloy_primitives::{Address, B256, Log, map::HashMap};

/// A hashed address or (topic position, topic).
type Key = u64;

/// A block's logs and recipients, transaction by transaction, as a retired
/// block keeps them until they are forgotten.
pub trait BlockLogs {
    fn tx_count(&self) -> usize;
    fn logs_of(&self, tx: usize) -> &[Log];
    /// The address the transaction calls (none for a creation).
    fn recipient_of(&self, tx: usize) -> Option<Address>;
}

impl BlockLogs for std::sync::Arc<Vec<crate::view::StoredTx>> {
    fn tx_count(&self) -> usize {
        self.len()
    }

    fn logs_of(&self, tx: usize) -> &[Log] {
        &self[tx].receipt.logs
    }

    fn recipient_of(&self, tx: usize) -> Option<Address> {
        alloy_consensus::Transaction::to(&self[tx].envelope)
    }
}

/// A retired block and how far its forgetting has gone.
#[derive(Debug)]
struct Retired<B> {
    number: u64,
    block: B,
    tx: usize,
}

/// The index; see the module comment.
#[derive(Debug)]
pub struct LogIndex<B> {
    postings: HashMap<Key, VecDeque<u64>>,
    /// Retired blocks whose keys are still to be forgotten, oldest first.
    retired: VecDeque<Retired<B>>,
    /// Blocks below this are retired: never candidates.
    retired_below: u64,
}

impl<B> Default for LogIndex<B> {
    fn default() -> Self {
        Self { postings: HashMap::default(), retired: VecDeque::new(), retired_below: 0 }
    }
}

/// A value folded into a key, FxHash's way (a rotate, an xor and a multiply
/// per word): fixed, so the index is the same on every run, and cheap, as
/// the sequencer's thread folds every log. A value crafted to share another's
/// key only makes blocks candidates that the exact match passes over.
fn fold(tag: u64, bytes: &[u8]) -> Key {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    bytes.chunks(8).fold(tag.wrapping_mul(SEED), |key, chunk| {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        (key.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(SEED)
    })
}

/// Tag of an address key, and of a recipient's; a topic key's is its
/// position (0..4) + 1.
const ADDRESS_TAG: u64 = 0xff;
const RECIPIENT_TAG: u64 = 0xfe;

fn address_key(address: &Address) -> Key {
    fold(ADDRESS_TAG, address.as_slice())
}

fn recipient_key(address: &Address) -> Key {
    fold(RECIPIENT_TAG, address.as_slice())
}

fn topic_key(position: usize, topic: &B256) -> Key {
    fold(position as u64 + 1, topic.as_slice())
}

/// The keys of one log.
fn keys_of(log: &Log) -> impl Iterator<Item = Key> + '_ {
    let topics = log.topics().iter().enumerate().map(|(i, t)| topic_key(i, t));
    std::iter::once(address_key(&log.address)).chain(topics)
}

impl<B: BlockLogs> LogIndex<B> {
    /// Indexes block `number` (no older than every block indexed) by `logs`.
    pub fn keep<'a>(&mut self, number: u64, logs: impl IntoIterator<Item = &'a Log>) {
        for log in logs {
            for key in keys_of(log) {
                self.keep_key(number, key);
            }
        }
    }

    /// Indexes block `number` (no older than every block indexed) by the
    /// address one of its transactions calls.
    pub fn keep_recipient(&mut self, number: u64, address: &Address) {
        self.keep_key(number, recipient_key(address));
    }

    fn keep_key(&mut self, number: u64, key: Key) {
        let postings = self.postings.entry(key).or_default();
        debug_assert!(postings.back().is_none_or(|last| *last <= number), "blocks are kept in order");
        if postings.back() != Some(&number) {
            postings.push_back(number);
        }
    }

    /// Block `number`, the oldest kept, is no longer kept: it stops being a
    /// candidate now, and its keys are forgotten by `forget_some`.
    pub fn retire(&mut self, number: u64, block: B) {
        debug_assert!(number >= self.retired_below, "blocks retire oldest first");
        self.retired_below = number + 1;
        self.retired.push_back(Retired { number, block, tx: 0 });
    }

    /// Forgets the keys of retired blocks' transactions, oldest first, until
    /// at least `logs_max` logs' worth are forgotten or none is left.
    pub fn forget_some(&mut self, logs_max: usize) {
        let mut forgotten = 0;
        while forgotten < logs_max {
            let Some(retired) = self.retired.front_mut() else { return };
            let Some(logs) = (retired.tx < retired.block.tx_count()).then(|| retired.block.logs_of(retired.tx)) else {
                self.retired.pop_front();
                continue;
            };
            let recipient = retired.block.recipient_of(retired.tx).map(|to| recipient_key(&to));
            for key in logs.iter().flat_map(keys_of).chain(recipient) {
                let Some(postings) = self.postings.get_mut(&key) else { continue };
                if postings.front() == Some(&retired.number) {
                    postings.pop_front();
                }
                if postings.is_empty() {
                    self.postings.remove(&key);
                }
            }
            forgotten += logs.len() + 1;
            retired.tx += 1;
        }
    }

    /// Forgets everything: the index is then built again from the blocks
    /// kept (a rewind).
    pub fn clear(&mut self) {
        self.postings.clear();
        self.retired.clear();
        self.retired_below = 0;
    }

    /// The blocks in `from..=to` that may hold a log from one of
    /// `addresses` (any, if empty) with, at each topic position, one of
    /// its topics (any, if empty), ascending; `None` when the filter names
    /// nothing to narrow by.
    pub fn candidates(&self, addresses: &[Address], topics: &[Vec<B256>], from: u64, to: u64) -> Option<Vec<u64>> {
        let from = from.max(self.retired_below);
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

    /// The blocks in `from..=to` that may mention `address`: as a log's
    /// address, as a topic (an indexed address argument), or as the address
    /// a transaction calls; ascending.
    pub fn mentions(&self, address: &Address, from: u64, to: u64) -> Vec<u64> {
        let from = from.max(self.retired_below);
        let as_topic = B256::left_padding_from(address.as_slice());
        let topics = (0..4).map(|position| topic_key(position, &as_topic));
        self.union([address_key(address), recipient_key(address)].into_iter().chain(topics), from, to)
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

    impl BlockLogs for Vec<Log> {
        fn tx_count(&self) -> usize {
            self.len()
        }

        fn logs_of(&self, tx: usize) -> &[Log] {
            std::slice::from_ref(&self[tx])
        }

        fn recipient_of(&self, tx: usize) -> Option<Address> {
            Some(self[tx].address)
        }
    }

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
        /// scan of every kept block finds, through keeping, retiring the
        /// oldest, forgetting them a few logs at a time, and rebuilding (a
        /// rewind).
        #[test]
        fn candidates_find_what_a_scan_of_every_block_finds(
            blocks in proptest::collection::vec(block(), 1..40),
            kept_max in 1usize..30,
            forget_per_block in 0usize..8,
            rebuild_at in 0usize..40,
            queries in proptest::collection::vec((filter(), 0u64..45, 0u64..45), 1..12),
        ) {
            let mut index = LogIndex::default();
            let mut kept: VecDeque<(u64, &Vec<Log>)> = VecDeque::new();
            let keep = |index: &mut LogIndex<Vec<Log>>, number: u64, logs: &Vec<Log>| {
                index.keep(number, logs);
                logs.iter().for_each(|log| index.keep_recipient(number, &log.address));
            };
            for (number, logs) in (1u64..).zip(&blocks) {
                keep(&mut index, number, logs);
                kept.push_back((number, logs));
                if kept.len() > kept_max {
                    let (old, logs) = kept.pop_front().unwrap();
                    index.retire(old, logs.clone());
                }
                index.forget_some(forget_per_block);
                if usize::try_from(number) == Ok(rebuild_at) {
                    index.clear();
                    for (n, logs) in &kept {
                        keep(&mut index, *n, logs);
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
            // An address's mentions: as a log's address (and so, here, a
            // recipient) or as a topic, at any position.
            for a in 0u8..7 {
                let address = Address::with_last_byte(a);
                let as_topic = B256::left_padding_from(address.as_slice());
                let mentioned: Vec<u64> = kept
                    .iter()
                    .filter(|(_, logs)| logs.iter().any(|l| l.address == address || l.topics().contains(&as_topic)))
                    .map(|(n, _)| *n)
                    .collect();
                prop_assert_eq!(index.mentions(&address, 0, u64::MAX), mentioned, "mentions of {}", address);
            }
            // Every block retired and forgotten leaves nothing behind.
            for (n, logs) in kept.drain(..) {
                index.retire(n, logs.clone());
            }
            index.forget_some(usize::MAX);
            prop_assert!(index.postings.is_empty() && index.retired.is_empty());
        }
    }

    #[test]
    fn a_query_over_100_000_blocks_reads_only_the_blocks_that_hold_a_match() {
        const BLOCKS: u64 = 100_000;
        let mut index = LogIndex::<Vec<Log>>::default();
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
        // Retired blocks are no candidates, before and after they are forgotten.
        for number in 1..=40_000 {
            let rare = log(2, &[u8::try_from(number % 3).unwrap()]);
            let logs = if number % 10_000 == 0 { vec![busy.clone(), rare] } else { vec![busy.clone()] };
            index.retire(number, logs);
        }
        assert_eq!(index.candidates(&rare, &[], 1, BLOCKS).unwrap(), (5..=10).map(|i| i * 10_000).collect::<Vec<_>>());
        index.forget_some(usize::MAX);
        assert_eq!(index.candidates(&rare, &[], 1, BLOCKS).unwrap(), (5..=10).map(|i| i * 10_000).collect::<Vec<_>>());
        assert_eq!(index.postings[&address_key(&Address::with_last_byte(1))].len(), 60_000);
    }
}
