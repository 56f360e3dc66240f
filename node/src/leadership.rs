//! What a leader needs to open the sequencer, the same for a single node at
//! start and for a pair's standby taking over: the next block's parameters,
//! signatures for blocks sealed but unsigned, the signing pipeline, the
//! delegated preconfirmation key and the execution shards.

use std::sync::{Arc, mpsc};

use alloy_primitives::{Address, B256};
use tephra_batchlog::{LogWriter, Record};
use tephra_dataplane::topology::Placement;
use tephra_exec::{BlockBuilder, BlockParams, ChainSpec};
use tephra_hsm::{Signer, SigningPipeline};

use crate::{
    boot::{DataDir, audited_block_signatures},
    config::Config,
    delegation::Delegation,
    error::{NodeError, io_error},
    sequencer::{Sequencer, SequencerHa, SequencerParts, block_choice},
    shared::{Shared, Submission},
    view::StoredBlock,
};

/// The parameters of the block after `parent`, as the leader of `epoch`
/// opens it.
pub(crate) fn next_block_params(
    chain: &ChainSpec,
    parent: &StoredBlock,
    config: &Config,
    beneficiary: Address,
    epoch: u64,
) -> Result<BlockParams, NodeError> {
    BlockParams::child_of(chain, &parent.header, block_choice(parent, config, beneficiary, epoch))
        .map_err(|e| NodeError::Genesis { path: config.node.genesis.clone(), reason: e.to_string() })
}

/// What a node needs to start sequencing, at start or when it takes over.
pub(crate) struct LeadParts {
    pub signer: Arc<dyn Signer>,
    pub beneficiary: Address,
    pub placement: Placement,
    pub submissions: mpsc::Receiver<Submission>,
}

/// The leader's open block and the log it writes.
pub(crate) struct OpenChain {
    pub log: LogWriter,
    /// None: an OP Stack chain's next block waits for its L1 origin.
    pub builder: Option<BlockBuilder>,
    /// Whether the open block's Open record is in the log already.
    pub open_logged: bool,
    pub epoch: u64,
}

/// The sequencer over `open`: blocks sealed but unsigned get their
/// signature from the audit log or the signer, the signing pipeline and the
/// delegation start, the shards come up.
pub(crate) fn open_sequencer(
    shared: &Arc<Shared>,
    lead: LeadParts,
    mut open: OpenChain,
    ha: Option<SequencerHa>,
) -> Result<Sequencer, NodeError> {
    let config = &shared.config;
    let data = DataDir(config.node.data_dir.clone());
    let unsigned = sign_from_audit_log(shared, &data, &mut open.log, open.epoch)?;
    // Sealing stops at the bound, so a log never holds more unsigned blocks
    // than it allows; a bound lowered since is widened to fit them.
    let mut signing = SigningPipeline::start(
        lead.signer.clone(),
        shared.chain.chain_id(),
        config.signer.unsigned_blocks_max.max(unsigned.len()),
        std::time::Duration::from_millis(config.signer.sign_timeout_ms),
        std::time::Duration::from_millis(config.signer.sign_retry_ms),
    )
    .map_err(io_error(&data.0))?;
    for (number, hash) in unsigned {
        signing.submit(number, hash, open.epoch).expect("the bound fits every unsigned block");
    }
    let number = shared.view.read().expect("view lock").open_block().params.number;
    let delegation =
        Delegation::start(lead.signer.clone(), shared.chain.chain_id(), config.signer.delegation_epoch_blocks, number)?;
    let executor = tephra_exec::ParallelExecutor::new(&config.exec.shard_config(&lead.placement))?;
    tracing::info!(shards = executor.shards(), pinned = config.exec.pin_shards, "execution shards");
    let parts = SequencerParts {
        submissions: lead.submissions,
        log: open.log,
        signing,
        delegation,
        executor,
        builder: open.builder,
        open_logged: open.open_logged,
        beneficiary: lead.beneficiary,
        snapshot_path: data.snapshot(),
        epoch: open.epoch,
        ha,
        // The hasher shares the verify cores: the sequencer's is its own.
        hasher_cores: lead.placement.verify.clone(),
    };
    Sequencer::new(shared.clone(), parts).map_err(io_error(&data.0))
}

/// A block signed just before a crash may be in the audit log but not yet
/// in the batch log: its signature is taken from there (logged, then shown)
/// rather than asked of the guard, which has moved past it. Returns the
/// blocks still unsigned, oldest first.
fn sign_from_audit_log(
    shared: &Shared,
    data: &DataDir,
    log: &mut LogWriter,
    epoch: u64,
) -> Result<Vec<(u64, B256)>, NodeError> {
    let audited = audited_block_signatures(&shared.config, data)?;
    let mut view = shared.view.write().expect("view lock");
    let unsigned: Vec<(u64, B256)> = view.unsigned_blocks().map(|b| (b.header.number, b.hash)).collect();
    let mut still_unsigned = Vec::new();
    let mut found = Vec::new();
    for (number, hash) in unsigned {
        let payload = tephra_hsm::Payload::SealedBlock {
            chain_id: shared.chain.chain_id(),
            number,
            block_hash: hash,
            leader_epoch: epoch,
        };
        match audited.get(&payload.signing_hash()) {
            Some(signature) => {
                log.append(&Record::Signed { number, hash, signature: signature.0 })?;
                found.push((number, hash, *signature));
            }
            None => still_unsigned.push((number, hash)),
        }
    }
    log.commit()?;
    for (number, hash, signature) in found {
        view.sign(number, hash, signature);
    }
    Ok(still_unsigned)
}
