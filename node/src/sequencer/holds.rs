//! What holds the sequencer back, each checked before the step it guards and
//! set on the node's health (which /ready shows): the log's disk below its
//! reserve, the signer failing, sync replication without a standby.

use std::time::{Duration, Instant};

use tephra_hsm::SignerHealth;

use super::{Sequencer, SequencerError};
use crate::health::Hold;

/// How long a sync leader waits for an acknowledgement before it looks at
/// its lease (and the watchdog's heartbeat) again.
const SYNC_WAIT_SLICE: Duration = Duration::from_millis(20);

impl Sequencer {
    /// Sets or clears `hold`, saying so when that changes (the disk and
    /// the signer as errors: blocks stop; replication as a warning).
    pub(super) fn set_hold(&self, hold: Hold, reason: Option<String>, held: &str, resumed: &str) {
        let logged = reason.clone();
        if self.shared.health.hold(hold, reason) {
            match logged {
                Some(reason) if matches!(hold, Hold::Replication | Hold::L1) => tracing::warn!(reason, "{held}"),
                Some(reason) => tracing::error!(reason, "{held}"),
                None => tracing::info!("{resumed}"),
            }
        }
    }

    /// Fails closed: no new block is sealed while the signer is failing or
    /// `unsigned_blocks_max` blocks already wait for it.
    pub(super) fn signer_allows_sealing(&mut self) -> bool {
        let health = self.signing.health();
        let failing = match &health {
            SignerHealth::Ok => None,
            SignerHealth::Backlogged { .. } => return false,
            SignerHealth::Failed(reason) => Some(reason.clone()),
        };
        self.set_hold(
            Hold::Signer,
            failing,
            "signer failing: sealing stopped",
            "signer answering again: sealing resumed",
        );
        health == SignerHealth::Ok
    }

    /// Whether the log's file system keeps its reserve, checked before
    /// anything new is made durable. Below it nothing is cut or sealed and new
    /// transactions are refused, so that no write meets a full disk with a
    /// mini-block executed but not durable; it resumes when space returns.
    pub(super) fn log_has_room(&mut self) -> bool {
        let reserve = self.shared.config.log.disk_free_min_bytes;
        let short = match self.log.free_bytes() {
            Ok(free) => {
                self.shared.metrics.log_disk_free_bytes.set(i64::try_from(free).unwrap_or(i64::MAX));
                (free < reserve).then(|| {
                    format!("batch log disk full: {free} bytes free, below log.disk_free_min_bytes = {reserve}")
                })
            }
            Err(error) => Some(format!("batch log disk free space unknown: {error}")),
        };
        let room = short.is_none();
        self.set_hold(
            Hold::Disk,
            short,
            "preconfirming stopped until space returns",
            "batch log disk has room again: preconfirming resumed",
        );
        room
    }

    /// Sync replication without a connected standby: nothing is cut or
    /// sealed (the pool fills and refuses) until a standby follows again.
    pub(super) fn standby_connected(&mut self) -> bool {
        let Some(ha) = &self.ha else { return true };
        if ha.mode == tephra_ha::ReplicationMode::Async {
            return true;
        }
        let connected = ha.feed.standby_connected();
        let absent = (!connected).then(|| "sync replication: no standby follows, nothing is preconfirmed".to_string());
        self.set_hold(
            Hold::Replication,
            absent,
            "preconfirming held until a standby follows",
            "a standby follows: preconfirming resumed",
        );
        connected
    }

    /// Whether this node still leads (a single node always does). A leader
    /// whose lease is gone is deposed: it takes nothing more, and the process
    /// exits failed, to come back as a standby.
    pub(super) fn still_leading(&self) -> bool {
        let Some(ha) = &self.ha else { return true };
        if ha.lease.leading() {
            return true;
        }
        self.shared.health.depose(ha.lease.reason().unwrap_or_else(|| "leadership lost".into()));
        false
    }

    /// Sync replication: holds until a standby has every record appended so
    /// far durably. Called with no lock on the view, so that reads go on
    /// during the round trip. `Stopped` if leadership (or the node) ended
    /// first: then nothing of it may be told to anyone.
    pub(super) fn replicate(&mut self) -> Result<(), SequencerError> {
        let Some(ha) = &self.ha else { return Ok(()) };
        if ha.mode == tephra_ha::ReplicationMode::Async {
            return Ok(());
        }
        let (feed, timeout) = (ha.feed.clone(), ha.sync_ack_timeout);
        let count = self.log.records();
        let started = Instant::now();
        loop {
            if feed.wait_replicated(count, SYNC_WAIT_SLICE) {
                self.shared.metrics.ha_sync_wait_us.observe(started.elapsed().as_micros() as f64);
                self.set_hold(Hold::Replication, None, "", "a standby acknowledges again: preconfirming resumed");
                return Ok(());
            }
            self.shared.beat();
            if !self.still_leading() || self.shared.health.shutting_down() {
                return Err(SequencerError::Stopped);
            }
            if !self.shared.health.holds(Hold::Replication) && started.elapsed() >= timeout {
                let reason = format!(
                    "sync replication: no standby has acknowledged for {} ms, nothing is preconfirmed",
                    timeout.as_millis()
                );
                self.set_hold(Hold::Replication, Some(reason), "preconfirming held", "");
            }
        }
    }
}
