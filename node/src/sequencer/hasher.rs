//! The state hasher: a thread that holds the state's Merkle commitment, so
//! that the sequencer never hashes the state trie on its own thread or under
//! the view's lock. The sequencer sends it each mini-block's diff (taken
//! under the lock, cheap: the accounts and slots written); the hasher folds
//! them in, hashes ahead every `HASH_AHEAD_INTERVAL` while diffs arrive, and
//! answers a seal's request for roots with only what came since left to hash.
//! It also frees a sealed block's executed transactions, which the view
//! holds in their stored form: dropping 12,000 of them took the sequencer
//! 1-2 ms of every seal.
//!
//! ```text
//!  sequencer ── diff per mini-block ──> hasher: apply; hash ahead every 2 ms
//!  seal ─────── roots? (the last diff) ─> hasher ── state root, withdrawals root ──> seal
//!  seal ─────── the executed transactions ─> hasher: freed
//! ```
//!
//! Invariant: every diff taken from the view's state goes to the hasher, in
//! order, before the next request for roots; so the roots equal those of the
//! state folded in place. On stop the commitment goes back into the state.

use std::{
    sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tephra_exec::{Commitment, ExecutedTx, SealRoots, StateDb, StateDiff};

/// Diffs queued for the hasher, at most: a sequencer this far ahead waits.
/// A mini-block is about a millisecond, so this is a second of them.
pub const HASHER_QUEUE_DIFFS_MAX: usize = 1024;
/// How often, at most, the hasher hashes what it has taken in ahead of the
/// seal: the seal waits for at most this much of the block's changes. Each
/// pass rehashes the trie's upper nodes again, on the verify cores; a pass
/// per diff (one a millisecond under load) would double that for little.
const HASH_AHEAD_INTERVAL: Duration = Duration::from_millis(2);

enum Request {
    Diff(StateDiff),
    Roots(SyncSender<SealRoots>),
    Free(Vec<ExecutedTx>),
}

/// The hasher thread, and the queue to it.
#[derive(Debug)]
pub struct StateHasher {
    requests: SyncSender<Request>,
    thread: JoinHandle<Commitment>,
    cores: Vec<usize>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Diff(diff) => write!(f, "Diff({} accounts)", diff.accounts.len()),
            Self::Roots(_) => f.write_str("Roots"),
            Self::Free(txs) => write!(f, "Free({} transactions)", txs.len()),
        }
    }
}

impl StateHasher {
    /// Takes `state`'s commitment to a thread of its own on `cores` (none:
    /// where the caller runs).
    pub fn start(state: &mut StateDb, cores: Vec<usize>) -> std::io::Result<Self> {
        let mut commitment = state.detach_commitment();
        let (requests, queue) = sync_channel(HASHER_QUEUE_DIFFS_MAX);
        let pin = cores.clone();
        let thread = std::thread::Builder::new().name("tephra-hash".into()).spawn(move || {
            if !pin.is_empty() {
                tephra_dataplane::topology::pin_current_thread(&pin);
            }
            serve(&mut commitment, &queue);
            commitment
        });
        thread.map(|thread| Self { requests, thread, cores })
    }

    /// Hands a diff over; waits only when `HASHER_QUEUE_DIFFS_MAX` are queued.
    pub fn send(&self, diff: StateDiff) {
        if !diff.is_empty() {
            self.requests.send(Request::Diff(diff)).expect("the hasher runs until stopped");
        }
    }

    /// The roots of the state once `diff` (the last since the previous
    /// `send`) is taken in.
    pub fn roots(&self, diff: StateDiff) -> SealRoots {
        self.send(diff);
        let (reply, answer) = sync_channel(1);
        self.requests.send(Request::Roots(reply)).expect("the hasher runs until stopped");
        answer.recv().expect("the hasher answers every request")
    }

    /// Frees a sealed block's executed transactions off the sequencer's path.
    pub fn free(&self, txs: Vec<ExecutedTx>) {
        self.requests.send(Request::Free(txs)).expect("the hasher runs until stopped");
    }

    /// Stops the thread and puts the commitment back into `state`, the state
    /// every diff was taken from.
    pub fn stop(self, state: &mut StateDb) {
        state.attach_commitment(self.join());
    }

    /// Drops the commitment held and takes `state`'s: the view's state was
    /// replaced wholesale (a rewind rebuilt it from the log).
    pub fn restart(self, state: &mut StateDb) -> std::io::Result<Self> {
        let cores = self.cores.clone();
        drop(self.join());
        Self::start(state, cores)
    }

    fn join(self) -> Commitment {
        drop(self.requests);
        self.thread.join().expect("the hasher does not panic")
    }
}

/// Takes requests until the sequencer hangs up.
fn serve(commitment: &mut Commitment, queue: &Receiver<Request>) {
    let mut unhashed = false;
    let mut hashed_at = Instant::now();
    loop {
        if unhashed && hashed_at.elapsed() >= HASH_AHEAD_INTERVAL {
            commitment.state_root();
            (unhashed, hashed_at) = (false, Instant::now());
        }
        // Nothing taken in since the last hash: wait for the next request.
        let wait = if unhashed { HASH_AHEAD_INTERVAL.saturating_sub(hashed_at.elapsed()) } else { Duration::MAX };
        match queue.recv_timeout(wait) {
            Ok(Request::Diff(diff)) => {
                commitment.apply(diff);
                unhashed = true;
            }
            Ok(Request::Roots(reply)) => {
                // The sequencer waits on the answer: it is never gone first.
                let _ = reply.send(SealRoots::of(commitment));
                (unhashed, hashed_at) = (false, Instant::now());
            }
            Ok(Request::Free(txs)) => drop(txs),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
