//! Signing off the hot path: sealed blocks go through a bounded queue to one
//! signing thread (an HSM signs one payload at a time), in order. When the
//! signer fails or is slower than `timeout`, the pipeline reports it as
//! failed and retries the same block until it succeeds: the node fails
//! closed, sealing nothing new while blocks stay unsigned, and resumes by
//! itself when the HSM answers again.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        mpsc::{self, Receiver, SyncSender, TryRecvError},
    },
    thread,
    time::{Duration, Instant},
};

use alloy_primitives::B256;

use crate::{Payload, Signature65, Signer};

/// A signed block, ready to be made durable and published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedBlock {
    pub number: u64,
    pub hash: B256,
    pub signature: Signature65,
    /// How long the signer took for it (the successful attempt).
    pub sign_time: Duration,
    /// When the block was queued for its signature.
    pub queued: Instant,
}

/// What the signing thread does, in order: a block's signature, or a
/// rewind of the guard before the rebuilt blocks come.
enum Job {
    Sign { number: u64, hash: B256, leader_epoch: u64 },
    Rewind { number: u64, hash: B256 },
}

/// Rewinds that may wait in the queue besides the blocks.
const REWINDS_QUEUED_MAX: usize = 4;

enum Report {
    Signed {
        number: u64,
        hash: B256,
        signature: Signature65,
        sign_time: Duration,
    },
    Failed {
        number: u64,
        reason: String,
    },
    /// A rewind the guard refused: nothing more is signed.
    RewindRefused {
        number: u64,
        reason: String,
    },
}

/// The signing backlog is at its bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{unsigned} blocks already wait for a signature")]
pub struct BacklogFull {
    pub unsigned: usize,
}

/// Whether the node may seal another block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignerHealth {
    Ok,
    /// `unsigned_max` sealed blocks wait for signatures: seal no more yet.
    Backlogged {
        unsigned: usize,
    },
    /// The signer failed or is too slow: seal nothing, report not-ready.
    Failed(String),
}

/// The pipeline, driven from the sequencer's thread.
pub struct SigningPipeline {
    jobs: SyncSender<Job>,
    reports: Receiver<Report>,
    /// Submitted, not yet signed: (number, submitted at).
    outstanding: VecDeque<(u64, Instant)>,
    unsigned_max: usize,
    timeout: Duration,
    failure: Option<String>,
}

impl core::fmt::Debug for SigningPipeline {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SigningPipeline")
            .field("outstanding", &self.outstanding.len())
            .field("failure", &self.failure)
            .finish()
    }
}

impl SigningPipeline {
    /// Starts the signing thread. At most `unsigned_max` blocks wait for a
    /// signature; a failed signature is retried every `retry`.
    pub fn start(
        signer: Arc<dyn Signer>,
        chain_id: u64,
        unsigned_max: usize,
        timeout: Duration,
        retry: Duration,
    ) -> std::io::Result<Self> {
        assert!(unsigned_max > 0, "at least one block may wait");
        let (jobs, job_rx) = mpsc::sync_channel::<Job>(unsigned_max + REWINDS_QUEUED_MAX);
        let (report_tx, reports) = mpsc::sync_channel(unsigned_max * 2 + REWINDS_QUEUED_MAX);
        thread::Builder::new().name("tephra-sign".into()).spawn(move || {
            while let Ok(job) = job_rx.recv() {
                let (number, hash, leader_epoch) = match job {
                    Job::Sign { number, hash, leader_epoch } => (number, hash, leader_epoch),
                    Job::Rewind { number, hash } => match signer.rewind(number, hash) {
                        Ok(()) => continue,
                        Err(error) => {
                            let _ = report_tx.send(Report::RewindRefused { number, reason: error.to_string() });
                            return;
                        }
                    },
                };
                let payload = Payload::SealedBlock { chain_id, number, block_hash: hash, leader_epoch };
                loop {
                    let started = Instant::now();
                    let report = match signer.sign(&payload) {
                        Ok(signature) => Report::Signed { number, hash, signature, sign_time: started.elapsed() },
                        Err(error) => Report::Failed { number, reason: error.to_string() },
                    };
                    let signed = matches!(report, Report::Signed { .. });
                    if report_tx.send(report).is_err() {
                        return;
                    }
                    if signed {
                        break;
                    }
                    thread::sleep(retry);
                }
            }
        })?;
        Ok(Self { jobs, reports, outstanding: VecDeque::new(), unsigned_max, timeout, failure: None })
    }

    /// Queues a sealed block, asked for by the leader of `leader_epoch` (0
    /// for a single node). Callers check `health` first: a full queue is
    /// refused rather than waited on.
    pub fn submit(&mut self, number: u64, hash: B256, leader_epoch: u64) -> Result<(), BacklogFull> {
        self.jobs
            .try_send(Job::Sign { number, hash, leader_epoch })
            .map_err(|_| BacklogFull { unsigned: self.outstanding.len() })?;
        self.outstanding.push_back((number, Instant::now()));
        Ok(())
    }

    /// Queues a rewind of the signer's guard to block `number` (`hash`),
    /// after the blocks queued before it: the blocks above it were abandoned
    /// and are rebuilt. Refused when the queue is full (try again later); a
    /// guard that refuses the rewind fails the pipeline for good.
    pub fn rewind(&mut self, number: u64, hash: B256) -> Result<(), BacklogFull> {
        self.jobs.try_send(Job::Rewind { number, hash }).map_err(|_| BacklogFull { unsigned: self.outstanding.len() })
    }

    /// Signatures made since the last call, in block order; updates health.
    pub fn collect(&mut self) -> Vec<SignedBlock> {
        let mut signed = Vec::new();
        loop {
            match self.reports.try_recv() {
                Ok(Report::Signed { number, hash, signature, sign_time }) => {
                    // When the seal asked for it (always outstanding until now).
                    let position = self.outstanding.iter().position(|(n, _)| *n == number);
                    let queued =
                        position.and_then(|i| self.outstanding.remove(i)).map_or_else(Instant::now, |(_, at)| at);
                    self.failure = None;
                    signed.push(SignedBlock { number, hash, signature, sign_time, queued });
                }
                Ok(Report::Failed { number, reason }) => {
                    self.failure = Some(format!("signing block {number} failed: {reason}"));
                }
                Ok(Report::RewindRefused { number, reason }) => {
                    self.failure = Some(format!("the signer refused to rewind to block {number}: {reason}"));
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    // A refused rewind stopped it: that reason stays.
                    self.failure.get_or_insert_with(|| "the signing thread stopped".into());
                    break;
                }
            }
        }
        signed
    }

    pub fn unsigned(&self) -> usize {
        self.outstanding.len()
    }

    /// Whether another block may be sealed now.
    pub fn health(&self) -> SignerHealth {
        if let Some(reason) = &self.failure {
            return SignerHealth::Failed(reason.clone());
        }
        if let Some((number, since)) = self.outstanding.front()
            && since.elapsed() > self.timeout
        {
            // No elapsed time in the reason: it is logged and published when it changes.
            return SignerHealth::Failed(format!(
                "block {number} unsigned past the signer timeout of {} ms",
                self.timeout.as_millis()
            ));
        }
        if self.outstanding.len() >= self.unsigned_max {
            return SignerHealth::Backlogged { unsigned: self.outstanding.len() };
        }
        SignerHealth::Ok
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::{FileSigner, SignError};

    /// An HSM that can be unplugged at an exact moment (the node's
    /// signer_fault test fails a real PKCS#11 token, end to end).
    struct Unpluggable {
        key: FileSigner,
        plugged: AtomicBool,
    }

    impl Signer for Unpluggable {
        fn public_key(&self) -> secp256k1::PublicKey {
            self.key.public_key()
        }
        fn sign(&self, payload: &Payload<'_>) -> Result<Signature65, SignError> {
            if !self.plugged.load(Ordering::SeqCst) {
                return Err(SignError::Device("device not found".into()));
            }
            self.key.sign(payload)
        }
    }

    fn wait_for(
        pipeline: &mut SigningPipeline,
        mut done: impl FnMut(&SigningPipeline, &[SignedBlock]) -> bool,
    ) -> Vec<SignedBlock> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut all = Vec::new();
        loop {
            all.extend(pipeline.collect());
            if done(pipeline, &all) {
                return all;
            }
            assert!(Instant::now() < deadline, "pipeline did not get there: {pipeline:?}");
            thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn fails_closed_applies_backpressure_and_resumes() {
        let signer =
            Arc::new(Unpluggable { key: FileSigner::from_bytes(&[3; 32]).unwrap(), plugged: AtomicBool::new(true) });
        let mut pipeline =
            SigningPipeline::start(signer.clone(), 1, 2, Duration::from_secs(30), Duration::from_millis(5)).unwrap();
        pipeline.submit(1, B256::repeat_byte(1), 0).unwrap();
        let signed = wait_for(&mut pipeline, |_, all| all.len() == 1);
        assert_eq!(signed[0].number, 1);
        assert_eq!(pipeline.health(), SignerHealth::Ok);

        signer.plugged.store(false, Ordering::SeqCst);
        pipeline.submit(2, B256::repeat_byte(2), 0).unwrap();
        wait_for(&mut pipeline, |p, _| matches!(p.health(), SignerHealth::Failed(_)));
        let SignerHealth::Failed(reason) = pipeline.health() else { unreachable!() };
        assert!(reason.contains("device not found"), "{reason}");
        // The bound: one more may wait, then the sealer is held back.
        pipeline.submit(3, B256::repeat_byte(3), 0).unwrap();
        assert_eq!(pipeline.unsigned(), 2);

        signer.plugged.store(true, Ordering::SeqCst);
        let signed = wait_for(&mut pipeline, |p, _| p.unsigned() == 0);
        assert_eq!(signed.iter().map(|s| s.number).collect::<Vec<_>>(), vec![2, 3], "in order, none lost");
        assert_eq!(pipeline.health(), SignerHealth::Ok);
    }

    #[test]
    fn a_rewind_comes_after_the_blocks_queued_before_it_and_lets_their_heights_be_signed_again() {
        let dir = tephra_testkit::fresh_dir("pipeline-rewind");
        let guard = crate::SignGuard::open(&dir.join("guard")).unwrap();
        let signer = crate::GuardedSigner::new(FileSigner::from_bytes(&[6; 32]).unwrap(), guard);
        let mut pipeline =
            SigningPipeline::start(Arc::new(signer), 1, 4, Duration::from_secs(30), Duration::from_millis(5)).unwrap();
        for number in 1..=3u8 {
            pipeline.submit(u64::from(number), B256::repeat_byte(number), 0).unwrap();
        }
        pipeline.rewind(1, B256::repeat_byte(1)).unwrap();
        pipeline.submit(2, B256::repeat_byte(0x22), 0).unwrap();
        let signed = wait_for(&mut pipeline, |p, _| p.unsigned() == 0);
        let order: Vec<_> = signed.iter().map(|s| (s.number, s.hash.0[0])).collect();
        assert_eq!(order, vec![(1, 1), (2, 2), (3, 3), (2, 0x22)]);
        assert_eq!(pipeline.health(), SignerHealth::Ok);
        // A rewind the guard refuses (deeper than its bound) stops signing, saying why.
        pipeline.submit(crate::guard::REWIND_BLOCKS_MAX + 9, B256::repeat_byte(9), 0).unwrap();
        wait_for(&mut pipeline, |p, _| p.unsigned() == 0);
        pipeline.rewind(1, B256::repeat_byte(1)).unwrap();
        wait_for(&mut pipeline, |p, _| matches!(p.health(), SignerHealth::Failed(_)));
        let SignerHealth::Failed(reason) = pipeline.health() else { unreachable!() };
        assert!(reason.contains("refused to rewind"), "{reason}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_backlog_holds_the_sealer_back() {
        let signer =
            Arc::new(Unpluggable { key: FileSigner::from_bytes(&[4; 32]).unwrap(), plugged: AtomicBool::new(false) });
        let mut pipeline =
            SigningPipeline::start(signer, 1, 2, Duration::from_secs(30), Duration::from_millis(50)).unwrap();
        pipeline.submit(1, B256::repeat_byte(1), 0).unwrap();
        pipeline.submit(2, B256::repeat_byte(2), 0).unwrap();
        assert!(matches!(pipeline.health(), SignerHealth::Backlogged { unsigned: 2 } | SignerHealth::Failed(_)));
    }

    #[test]
    fn a_signer_slower_than_the_timeout_is_reported() {
        struct Stuck(FileSigner);
        impl Signer for Stuck {
            fn public_key(&self) -> secp256k1::PublicKey {
                self.0.public_key()
            }
            fn sign(&self, _: &Payload<'_>) -> Result<Signature65, SignError> {
                thread::sleep(Duration::from_secs(3600));
                unreachable!("killed with the test process")
            }
        }
        let mut pipeline = SigningPipeline::start(
            Arc::new(Stuck(FileSigner::from_bytes(&[5; 32]).unwrap())),
            1,
            4,
            Duration::from_millis(20),
            Duration::from_millis(5),
        )
        .unwrap();
        pipeline.submit(9, B256::ZERO, 0).unwrap();
        wait_for(&mut pipeline, |p, _| matches!(p.health(), SignerHealth::Failed(_)));
        let SignerHealth::Failed(reason) = pipeline.health() else { unreachable!() };
        assert!(reason.contains("block 9 unsigned"), "{reason}");
    }
}
