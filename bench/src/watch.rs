//! The block watcher: polls a node's JSON-RPC for new blocks and records when
//! each was first seen sealed and, on tephra, first seen signed (its
//! `signature` field set), and which block holds each transaction.
//!
//! The times carry the polling interval and one JSON-RPC round trip as
//! error: at most `POLL_INTERVAL` plus about a millisecond here.

use std::{
    collections::{HashMap, VecDeque},
    sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use alloy_primitives::B256;
use serde_json::{Value, json};

use crate::peer::rpc;

const POLL_INTERVAL: Duration = Duration::from_millis(2);
/// Blocks awaiting their signature that the watcher re-reads each round, at
/// most (the oldest first).
const UNSIGNED_POLLED_MAX: usize = 8;
/// How long after `finish` the watcher waits for the awaited transactions'
/// blocks to be sealed and signed, at most.
const FINISH_TIMEOUT: Duration = Duration::from_secs(10);

/// When blocks were seen, by number; which block holds a transaction.
#[derive(Debug, Default)]
pub struct BlockTimes {
    sealed: HashMap<u64, Instant>,
    signed: HashMap<u64, Instant>,
    tx_block: HashMap<B256, u64>,
}

impl BlockTimes {
    pub fn seal(&mut self, number: u64, at: Instant, txs: &[B256]) {
        self.sealed.entry(number).or_insert(at);
        for hash in txs {
            self.tx_block.insert(*hash, number);
        }
    }

    pub fn sign(&mut self, number: u64, at: Instant) {
        self.signed.entry(number).or_insert(at);
    }

    pub fn sealed_at(&self, number: u64) -> Option<Instant> {
        self.sealed.get(&number).copied()
    }

    pub fn signed_at(&self, number: u64) -> Option<Instant> {
        self.signed.get(&number).copied()
    }

    pub fn block_of(&self, tx: &B256) -> Option<u64> {
        self.tx_block.get(tx).copied()
    }

    pub fn blocks_sealed(&self) -> usize {
        self.sealed.len()
    }

    /// Whether every block seen sealed has been seen signed.
    fn all_signed(&self) -> bool {
        self.signed.len() == self.sealed.len()
    }

    fn all_included(&self, txs: &[B256]) -> bool {
        txs.iter().all(|hash| self.tx_block.contains_key(hash))
    }
}

/// A running watcher; `finish` stops it and hands over what it saw.
#[derive(Debug)]
pub struct Watcher {
    finish: SyncSender<Vec<B256>>,
    handle: JoinHandle<BlockTimes>,
}

impl Watcher {
    /// Watches `url` from the block after the current head. `signatures`:
    /// the node signs blocks (tephra) and the watcher waits for each.
    pub fn start(url: &str, signatures: bool) -> Result<Self, String> {
        let agent = ureq::Agent::new_with_defaults();
        let head = block_number(&agent, url)?;
        let (finish, finishing) = sync_channel(1);
        let url = url.to_string();
        let handle = std::thread::Builder::new()
            .name("block-watcher".into())
            .spawn(move || watch(&agent, &url, head + 1, signatures, &finishing))
            .map_err(|e| e.to_string())?;
        Ok(Self { finish, handle })
    }

    /// Stops once every transaction in `awaited` has been seen in a block and
    /// every block seen is signed (or after `FINISH_TIMEOUT`): a preconfirmed
    /// transaction's block may still be open when its sender is done.
    pub fn finish(self, awaited: Vec<B256>) -> BlockTimes {
        // The watcher only ends after receiving, so the send cannot fail
        // unless it panicked, which the join reports.
        let _ = self.finish.send(awaited);
        self.handle.join().expect("the block watcher does not panic")
    }
}

fn block_number(agent: &ureq::Agent, url: &str) -> Result<u64, String> {
    let head = rpc(agent, url, "eth_blockNumber", json!([]))?;
    parse_quantity(&head).ok_or_else(|| format!("eth_blockNumber answered {head}"))
}

fn parse_quantity(value: &Value) -> Option<u64> {
    u64::from_str_radix(value.as_str()?.strip_prefix("0x")?, 16).ok()
}

/// Polls until told to finish; then keeps going until the awaited
/// transactions are in blocks and every block seen is signed, so that the
/// last blocks of a phase are measured too.
fn watch(
    agent: &ureq::Agent,
    url: &str,
    mut next: u64,
    signatures: bool,
    finishing: &Receiver<Vec<B256>>,
) -> BlockTimes {
    let mut times = BlockTimes::default();
    let mut unsigned: VecDeque<u64> = VecDeque::new();
    let mut awaited: Option<(Vec<B256>, Instant)> = None;
    loop {
        if awaited.is_none() {
            match finishing.try_recv() {
                Ok(txs) => awaited = Some((txs, Instant::now())),
                Err(TryRecvError::Disconnected) => awaited = Some((Vec::new(), Instant::now())),
                Err(TryRecvError::Empty) => {}
            }
        }
        if let Ok(head) = block_number(agent, url) {
            while next <= head {
                let Ok(block) = rpc(agent, url, "eth_getBlockByNumber", json!([format!("{next:#x}"), false])) else {
                    break;
                };
                let now = Instant::now();
                let hashes: Vec<B256> = block["transactions"]
                    .as_array()
                    .map(|txs| txs.iter().filter_map(|h| h.as_str()?.parse().ok()).collect())
                    .unwrap_or_default();
                times.seal(next, now, &hashes);
                if signatures {
                    if block["signature"].is_string() {
                        times.sign(next, now);
                    } else {
                        unsigned.push_back(next);
                    }
                }
                next += 1;
            }
        }
        for _ in 0..unsigned.len().min(UNSIGNED_POLLED_MAX) {
            let number = unsigned.pop_front().expect("counted");
            // The header alone: a block's transaction hashes, fetched again
            // every round, cost the node and this thread milliseconds each
            // right after a seal, the moment the node is busiest.
            match rpc(agent, url, "erigon_getHeaderByNumber", json!([format!("{number:#x}")])) {
                Ok(block) if block["signature"].is_string() => times.sign(number, Instant::now()),
                _ => unsigned.push_back(number),
            }
        }
        if let Some((txs, since)) = &awaited {
            let done = times.all_included(txs) && (!signatures || times.all_signed());
            if done || since.elapsed() > FINISH_TIMEOUT {
                return times;
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
