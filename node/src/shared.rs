//! What the serving side (JSON-RPC, UDP) shares with the sequencer: the
//! chain view behind its lock, the rules transactions are verified against,
//! the node's health, and the queue into the sequencer.

use std::{
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
        mpsc::SyncSender,
    },
    time::Instant,
};

use alloy_primitives::{Address, B256};
use tephra_exec::{ChainSpec, VerifiedTx, Verifier};
use tephra_types::{Reject, RejectCode};
use tokio::sync::{broadcast, oneshot};

use crate::{
    chain_view::{ChainView, Event},
    config::Config,
    filters::Filters,
    health::Health,
    metrics::{Metrics, ReasonLabel},
    view::PreconfRef,
};

/// A durable preconfirmation: where the transaction sits and how it ended.
#[derive(Clone, Debug)]
pub struct Preconf {
    pub hash: B256,
    pub block_number: u64,
    pub index: usize,
    pub success: bool,
    pub gas_used: u64,
    /// Its hot-key signature, proof and certificate (none without a
    /// certified hot key).
    pub signed: Option<PreconfRef>,
}

/// How far a submission got: admitted to the pool, or durably preconfirmed.
#[derive(Clone, Debug)]
pub enum SubmitStatus {
    Pooled,
    Preconfirmed(Preconf),
}

pub type SubmitOutcome = Result<SubmitStatus, Reject>;

/// A verified transaction on its way to the sequencer.
#[derive(Debug)]
pub struct Submission {
    pub tx: VerifiedTx,
    pub received: Instant,
    pub reply: Option<oneshot::Sender<SubmitOutcome>>,
    /// Answer at preconfirmation rather than at admission.
    pub wait_for_preconf: bool,
}

/// Everything the serving side shares with the sequencer.
#[derive(Debug)]
pub struct Shared {
    pub chain: ChainSpec,
    pub config: Config,
    /// The chain as reads see it; the sequencer (or a standby's role thread)
    /// is its only writer.
    pub view: RwLock<ChainView>,
    /// The open block's rules; handlers verify with it, the view sets it.
    pub verifier: Arc<RwLock<Verifier>>,
    pub metrics: Arc<Metrics>,
    /// Subscribers' feed; the view publishes on it.
    pub events: broadcast::Sender<Event>,
    pub submissions: SyncSender<Submission>,
    pub signer_address: Address,
    pub health: Arc<Health>,
    /// Turns of the sequencer's (or role thread's) loop: the service
    /// watchdog is fed only while it moves.
    pub heartbeat: AtomicU64,
    /// An OP Stack chain's rollup config and L1 view.
    pub op: Option<Arc<crate::op::OpSequencing>>,
    /// Trace requests running, at most `trace.concurrent_max`.
    pub trace_slots: tokio::sync::Semaphore,
    /// An OP Stack chain's batcher (`batcher.enabled`): its heads and window alarm.
    pub batcher: Option<Arc<crate::batcher::BatcherStatus>>,
    /// The polling filters; taken before the view's lock, never after.
    pub filters: Mutex<Filters>,
    /// This chain's Hyperlane validator (`[interop] validator`), set once
    /// at start.
    pub validator: std::sync::OnceLock<Arc<crate::interop::ValidatorStatus>>,
}

impl Shared {
    /// Queues a verified transaction. The reply comes at admission, or with
    /// `wait_for_preconf` once the transaction is durably preconfirmed.
    pub fn submit(
        &self,
        tx: VerifiedTx,
        reply: Option<oneshot::Sender<SubmitOutcome>>,
        wait_for_preconf: bool,
    ) -> Result<(), Reject> {
        self.metrics.tx_received.inc();
        let hash = tx.hash;
        self.health.admit(&hash).inspect_err(|reject| self.reject_metric(reject))?;
        let submission = Submission { tx, received: Instant::now(), reply, wait_for_preconf };
        self.submissions.try_send(submission).map_err(|_| {
            let reject = Reject::new(RejectCode::Busy, format!("submission queue full, {hash} not taken"));
            self.reject_metric(&reject);
            reject
        })
    }

    pub fn reject_metric(&self, reject: &Reject) {
        self.metrics.tx_rejected.get_or_create(&ReasonLabel { code: reject.code.as_u16() }).inc();
    }

    /// One more turn of the loop that owns the view.
    pub fn beat(&self) {
        self.heartbeat.fetch_add(1, Ordering::Relaxed);
    }
}
