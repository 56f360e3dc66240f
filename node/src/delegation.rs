//! The node's side of delegated preconfirmation keys: the current epoch's hot
//! key and certificate, and the next epoch's prepared half an epoch ahead on a
//! thread of its own, so that the block key's slow signature never stalls the
//! sequencer.

use std::sync::{
    Arc,
    mpsc::{self, Receiver, TryRecvError},
};

use tephra_hsm::{Certificate, HotKey, SignError, Signer, certify};

type Certified = (HotKey, Certificate);

pub struct Delegation {
    signer: Arc<dyn Signer>,
    chain_id: u64,
    epoch_blocks: u64,
    current: Option<Certified>,
    next: Option<Certified>,
    pending: Option<Receiver<Result<Certified, SignError>>>,
}

impl core::fmt::Debug for Delegation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Delegation")
            .field("current", &self.current.as_ref().map(|c| c.1.epoch))
            .field("next", &self.next.as_ref().map(|c| c.1.epoch))
            .finish()
    }
}

fn certify_epoch(signer: &dyn Signer, chain_id: u64, epoch_blocks: u64, epoch: u64) -> Result<Certified, SignError> {
    let hot = HotKey::generate()?;
    let from = epoch.saturating_mul(epoch_blocks);
    let certificate = certify(signer, chain_id, epoch, &hot, from, from.saturating_add(epoch_blocks))?;
    Ok((hot, certificate))
}

impl Delegation {
    /// Certifies a hot key for the epoch of `block_number` (waiting for the
    /// block key once, at start).
    pub fn start(
        signer: Arc<dyn Signer>,
        chain_id: u64,
        epoch_blocks: u64,
        block_number: u64,
    ) -> Result<Self, SignError> {
        let current = certify_epoch(&*signer, chain_id, epoch_blocks, block_number / epoch_blocks)?;
        tracing::info!(epoch = current.1.epoch, hot_key = %current.1.hot_key, "preconfirmation key certified");
        Ok(Self { signer, chain_id, epoch_blocks, current: Some(current), next: None, pending: None })
    }

    /// The hot key for preconfirmations in block `number`, if one is certified.
    pub fn key_for(&mut self, number: u64) -> Option<&Certified> {
        if let Some(pending) = &self.pending {
            match pending.try_recv() {
                Ok(Ok(next)) => {
                    tracing::info!(epoch = next.1.epoch, hot_key = %next.1.hot_key, "next preconfirmation key certified");
                    self.next = Some(next);
                    self.pending = None;
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "certifying the next preconfirmation key failed; retrying");
                    self.pending = None;
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => self.pending = None,
            }
        }
        let covers = |c: &Option<Certified>| {
            c.as_ref().is_some_and(|(_, cert)| (cert.valid_from_block..cert.valid_until_block).contains(&number))
        };
        if !covers(&self.current) && covers(&self.next) {
            self.current = self.next.take();
        }
        let epoch = number / self.epoch_blocks;
        let halfway = epoch * self.epoch_blocks + self.epoch_blocks / 2;
        if number >= halfway && self.next.is_none() && self.pending.is_none() {
            let (signer, chain_id, epoch_blocks) = (self.signer.clone(), self.chain_id, self.epoch_blocks);
            let (done, pending) = mpsc::sync_channel(1);
            let spawned = std::thread::Builder::new().name("tephra-certify".into()).spawn(move || {
                let _ = done.send(certify_epoch(&*signer, chain_id, epoch_blocks, epoch + 1));
            });
            if spawned.is_ok() {
                self.pending = Some(pending);
            }
        }
        if covers(&self.current) { self.current.as_ref() } else { None }
    }
}
