//! Admission: submissions into the pool, and the answers for what leaves it
//! without being included (replaced, evicted, stale, expired).

use alloy_primitives::B256;
use tephra_exec::pool::Pool;
use tephra_types::{Reject, RejectCode};

use super::{Sequencer, Waiter};
use crate::shared::{Submission, SubmitOutcome, SubmitStatus};

impl Sequencer {
    pub(super) fn admit(&mut self, arrivals: Vec<Submission>) {
        let now_ms = self.pool_ms();
        let shared = self.shared.clone();
        let mut view = shared.view.write().expect("view lock");
        for Submission { tx, received, mut reply, wait_for_preconf } in arrivals {
            let hash = tx.hash;
            // Checked here, where the sequencer holds the view anyway: a
            // JSON-RPC worker that took the view's read lock for it waited
            // out every mini-block's execution and fsync.
            let admitted = if view.holds_tx(&hash) {
                Err(Reject::new(RejectCode::AlreadyKnown, format!("{hash} is already included")))
            } else {
                let (state, pool) = view.state_and_pool_mut();
                let state_nonce = state.nonce(&tx.sender);
                pool.insert(tx, state_nonce, now_ms)
            };
            match admitted {
                Ok(admitted) => {
                    self.shared.metrics.tx_accepted.inc();
                    for (gone, code) in
                        [(admitted.replaced, RejectCode::Replaced), (admitted.evicted, RejectCode::Evicted)]
                    {
                        if let Some(gone) = gone {
                            self.answer(&gone.hash, Err(Reject::new(code, format!("{} left the pool", gone.hash))));
                        }
                    }
                    if !wait_for_preconf && let Some(reply) = reply.take() {
                        let _ = reply.send(Ok(SubmitStatus::Pooled));
                    }
                    self.waiting.insert(hash, Waiter { reply, received });
                }
                Err(reject) => {
                    self.shared.reject_metric(&reject);
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(reject));
                    }
                }
            }
        }
        let pool = view.state_and_pool_mut().1;
        self.answer_stale(pool);
        pool.expire(now_ms, |tx| {
            if let Some(waiter) = self.waiting.remove(&tx.hash)
                && let Some(reply) = waiter.reply
            {
                let _ = reply.send(Err(Reject::new(RejectCode::Expired, format!("{} expired", tx.hash))));
            }
        });
        self.shared.metrics.pool_size.set(i64::try_from(pool.len()).unwrap_or(i64::MAX));
    }

    /// Answers the transactions whose sender's nonce moved past them.
    pub(super) fn answer_stale(&mut self, pool: &mut Pool) {
        let stale: Vec<B256> = pool.drain_stale().map(|tx| tx.hash).collect();
        for hash in stale {
            let reject = Reject::new(RejectCode::NonceTooLow, "the account's nonce moved past it");
            self.shared.reject_metric(&reject);
            self.answer(&hash, Err(reject));
        }
    }

    /// Answers a waiting submitter, once.
    pub(super) fn answer(&mut self, hash: &B256, outcome: SubmitOutcome) {
        if let Some(waiter) = self.waiting.remove(hash) {
            if outcome.is_ok() {
                let latency = waiter.received.elapsed().as_micros() as f64;
                self.shared.metrics.preconf_latency_us.observe(latency);
            }
            if let Some(reply) = waiter.reply {
                let _ = reply.send(outcome);
            }
        }
    }
}
