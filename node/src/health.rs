//! One owner for the node's health: whether it is ready (/ready, systemd's
//! STATUS=), whether it takes transactions, and whether it is stopping.
//!
//! ```text
//!   sequencer / role thread ── hold(kind, reason) ──┐
//!                             lead / follow / depose├─> Health ──> /ready, STATUS=, tephra ready
//!   Running::stop ─────────── request_shutdown ─────┘      └────> admit(): every submission
//! ```
//!
//! Invariants: a hold is set and cleared by the one part that owns its cause
//! (disk and signer and replication and L1: the sequencer; leadership: the role
//! thread; posting batches: the batcher); /ready names every hold in force, in `Hold` order; a node takes
//! transactions only while it leads and its log's disk keeps its reserve. The
//! checks on every submission read one atomic word, never a lock.

use std::sync::{
    Mutex,
    atomic::{AtomicU32, Ordering},
};

use tephra_types::{Reject, RejectCode};

/// What holds the node back, each with the reason /ready shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// The batch log's disk is below its reserve: nothing new is made
    /// durable and transactions are refused.
    Disk,
    /// The block signer fails: no block is sealed.
    Signer,
    /// Sync replication without a standby's acknowledgement: nothing is
    /// preconfirmed.
    Replication,
    /// The batch log failed a write: the node stops.
    LogFailed,
    /// This node stopped leading: it stops and rejoins as a standby.
    Deposed,
    /// An OP Stack chain's next block has no L1 origin it may take (the L1
    /// unreachable past the sequencer drift, or reorged below the origin):
    /// no block opens; transactions wait in the pool.
    L1,
    /// An OP Stack chain's batcher cannot post (its key's HSM fails, the
    /// L1 refuses or does not answer) or a batch is close to missing its
    /// sequencing window: blocks and preconfirmations go on while the
    /// window allows (`src/batcher/`).
    Batcher,
    /// This chain's Hyperlane validator stopped attesting (its key fails,
    /// or the chain changed under a signed checkpoint): the chain goes on,
    /// its messages wait (`src/interop.rs`).
    Validator,
}

impl Hold {
    const ALL: [Hold; 8] = [
        Hold::Disk,
        Hold::Signer,
        Hold::Replication,
        Hold::LogFailed,
        Hold::Deposed,
        Hold::L1,
        Hold::Batcher,
        Hold::Validator,
    ];

    fn bit(self) -> u32 {
        1 << self as u32
    }

    /// The hold's reason as /ready shows it.
    fn shown(self, reason: &str) -> String {
        match self {
            Hold::Deposed => format!("not the leader: {reason}"),
            _ => reason.to_string(),
        }
    }
}

/// The node has replayed its log and serves.
const STARTED: u32 = 1 << 16;
/// The node takes transactions: a single node always, a pair's leader.
const LEADING: u32 = 1 << 17;
/// Stopping: every loop ends at its next turn.
const SHUTDOWN: u32 = 1 << 18;
const HOLD_BITS: u32 = (1 << Hold::ALL.len()) - 1;

#[derive(Debug, Default)]
struct Reasons {
    holds: [Option<String>; Hold::ALL.len()],
    /// A standby's answer to transactions: where the leader takes them.
    leader_hint: String,
}

/// The node's health; see the module comment.
#[derive(Debug)]
pub struct Health {
    flags: AtomicU32,
    reasons: Mutex<Reasons>,
}

impl Health {
    /// A node that has not started yet; `leading` for a single node.
    pub fn new(leading: bool) -> Self {
        Self { flags: AtomicU32::new(if leading { LEADING } else { 0 }), reasons: Mutex::default() }
    }

    fn flags(&self) -> u32 {
        self.flags.load(Ordering::Acquire)
    }

    fn set_flag(&self, flag: u32, on: bool) {
        if on {
            self.flags.fetch_or(flag, Ordering::AcqRel);
        } else {
            self.flags.fetch_and(!flag, Ordering::AcqRel);
        }
    }

    fn reasons(&self) -> std::sync::MutexGuard<'_, Reasons> {
        self.reasons.lock().expect("health lock")
    }

    /// The log is replayed and the servers listen.
    pub fn set_started(&self) {
        self.set_flag(STARTED, true);
    }

    pub fn started(&self) -> bool {
        self.flags() & STARTED != 0
    }

    /// Sets (`Some`) or clears (`None`) a hold; true if that changed whether
    /// it holds.
    pub fn hold(&self, hold: Hold, reason: Option<String>) -> bool {
        let mut reasons = self.reasons();
        let was = reasons.holds[hold as usize].is_some();
        let now = reason.is_some();
        reasons.holds[hold as usize] = reason;
        self.set_flag(hold.bit(), now);
        was != now
    }

    /// Whether `hold` is in force.
    pub fn holds(&self, hold: Hold) -> bool {
        self.flags() & hold.bit() != 0
    }

    /// `None` when ready; otherwise why not, as /ready says it: every hold
    /// in force, or "starting".
    pub fn not_ready(&self) -> Option<String> {
        let flags = self.flags();
        if flags & HOLD_BITS != 0 {
            let reasons = self.reasons();
            let held: Vec<String> = Hold::ALL
                .iter()
                .zip(&reasons.holds)
                .filter_map(|(hold, reason)| Some(hold.shown(reason.as_deref()?)))
                .collect();
            if !held.is_empty() {
                return Some(held.join("; "));
            }
        }
        (flags & STARTED == 0).then(|| "starting".to_string())
    }

    /// Whether a transaction may be queued now; the rejection says why not.
    pub fn admit(&self, hash: &alloy_primitives::B256) -> Result<(), Reject> {
        let flags = self.flags();
        if flags & LEADING == 0 {
            let hint = self.reasons().leader_hint.clone();
            return Err(Reject::new(
                RejectCode::NotLeader,
                format!("{hash} not taken: this node is a standby; {hint}"),
            ));
        }
        if flags & Hold::Disk.bit() != 0 {
            let reason = self.reasons().holds[Hold::Disk as usize].clone().unwrap_or_default();
            return Err(Reject::new(RejectCode::NotReady, format!("{hash} not taken: {reason}")));
        }
        Ok(())
    }

    /// This node leads: it takes transactions.
    pub fn set_leading(&self) {
        self.set_flag(LEADING, true);
    }

    pub fn leading(&self) -> bool {
        self.flags() & LEADING != 0
    }

    /// A standby follows the leader that `hint` names to clients.
    pub fn set_leader_hint(&self, hint: String) {
        self.reasons().leader_hint = hint;
    }

    /// This node stopped leading: it takes nothing more, is not ready, and
    /// stops (the process exits with the reason, to rejoin as a standby).
    pub fn depose(&self, reason: String) {
        self.set_flag(LEADING, false);
        self.hold(Hold::Deposed, Some(reason));
        self.request_shutdown();
    }

    /// Why this node stopped leading, if it did.
    pub fn deposed(&self) -> Option<String> {
        self.reasons().holds[Hold::Deposed as usize].clone()
    }

    /// The batch log failed: not ready at once (the state may hold a
    /// mini-block that is not durable), and stopping.
    pub fn log_failed(&self, reason: String) {
        self.hold(Hold::LogFailed, Some(reason));
        self.request_shutdown();
    }

    pub fn request_shutdown(&self) {
        self.set_flag(SHUTDOWN, true);
    }

    pub fn shutting_down(&self) -> bool {
        self.flags() & SHUTDOWN != 0
    }
}

#[cfg(test)]
mod tests {
    use alloy_primitives::B256;

    use super::*;

    #[test]
    fn ready_only_when_started_and_nothing_holds() {
        let health = Health::new(true);
        assert_eq!(health.not_ready().as_deref(), Some("starting"));
        health.set_started();
        assert_eq!(health.not_ready(), None);
        assert!(health.hold(Hold::Signer, Some("signer failing".into())));
        assert!(!health.hold(Hold::Signer, Some("signer failing still".into())), "already held");
        assert!(health.hold(Hold::Disk, Some("disk full".into())));
        assert_eq!(health.not_ready().as_deref(), Some("disk full; signer failing still"), "every hold, in order");
        assert!(health.hold(Hold::Disk, None));
        assert!(health.hold(Hold::Signer, None));
        assert_eq!(health.not_ready(), None);
    }

    #[test]
    fn only_a_leader_with_room_on_its_disk_takes_transactions() {
        let hash = B256::repeat_byte(1);
        let standby = Health::new(false);
        standby.set_leader_hint("send it to the leader a at http://a".into());
        let refused = standby.admit(&hash).unwrap_err();
        assert_eq!(refused.code, RejectCode::NotLeader);
        assert!(refused.detail.ends_with("send it to the leader a at http://a"), "{}", refused.detail);
        standby.set_leading();
        assert!(standby.admit(&hash).is_ok());
        standby.hold(Hold::Disk, Some("batch log disk full".into()));
        let refused = standby.admit(&hash).unwrap_err();
        assert_eq!((refused.code, refused.detail.ends_with("batch log disk full")), (RejectCode::NotReady, true));
        // Held sealing or preconfirming leaves the pool open.
        standby.hold(Hold::Disk, None);
        standby.hold(Hold::Signer, Some("signer failing".into()));
        standby.hold(Hold::Replication, Some("no standby".into()));
        assert!(standby.admit(&hash).is_ok());
    }

    #[test]
    fn a_deposed_leader_refuses_is_not_ready_and_stops() {
        let health = Health::new(true);
        health.set_started();
        assert!(!health.shutting_down());
        health.depose("lease lapsed".into());
        assert_eq!(health.admit(&B256::ZERO).unwrap_err().code, RejectCode::NotLeader);
        assert_eq!(health.deposed().as_deref(), Some("lease lapsed"));
        assert_eq!(health.not_ready().as_deref(), Some("not the leader: lease lapsed"));
        assert!(health.shutting_down());
    }
}
