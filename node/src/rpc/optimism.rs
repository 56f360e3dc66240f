//! op-node's rollup RPC for an OP Stack chain (op-service's rollup client:
//! what op-batcher, op-proposer and op-challenger call): the rollup config,
//! the sync status and output roots. The safe and finalized L2 heads are
//! the batcher's (`src/batcher/`): blocks whose batches it read back from
//! L1; without a batcher they stay at genesis.

use alloy_primitives::{B256, keccak256};
use jsonrpsee::types::Params;
use serde_json::{Value, json};

use super::{
    RpcResult,
    errors::invalid,
    params::{list, parse_tag, resolve},
};
use crate::{chain_view::ChainView, shared::Shared, view::StoredBlock};

/// The output root's only version so far.
const OUTPUT_VERSION_V0: B256 = B256::ZERO;

pub(super) fn rollup_config(shared: &Shared) -> RpcResult {
    let op = shared.op.as_ref().expect("registered for OP Stack chains only");
    Ok(serde_json::to_value(&op.rollup).expect("the rollup config serialises"))
}

pub(super) fn sync_status(shared: &Shared) -> RpcResult {
    let view = shared.view.read().expect("view lock");
    Ok(status(shared, &view))
}

/// op-node's `OutputResponse` for a kept sealed block: output root v0 over
/// its state root, the message passer's storage root (an Isthmus header's
/// withdrawals root) and its hash.
pub(super) fn output_at_block(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let p = list(params)?;
    let tag = parse_tag(p.first())?;
    let view = shared.view.read().expect("view lock");
    let block = resolve(&view, tag).and_then(|n| view.block(n)).ok_or_else(|| invalid("block not kept"))?;
    let message_passer_root = block
        .header
        .withdrawals_root
        .ok_or_else(|| invalid("the block's header has no message passer root (before Isthmus)"))?;
    let mut preimage = [0u8; 128];
    preimage[..32].copy_from_slice(OUTPUT_VERSION_V0.as_slice());
    preimage[32..64].copy_from_slice(block.header.state_root.as_slice());
    preimage[64..96].copy_from_slice(message_passer_root.as_slice());
    preimage[96..].copy_from_slice(block.hash.as_slice());
    Ok(json!({
        "version": OUTPUT_VERSION_V0,
        "outputRoot": keccak256(preimage),
        "blockRef": l2_ref(shared, block),
        "withdrawalStorageRoot": message_passer_root,
        "stateRoot": block.header.state_root,
        "syncStatus": status(shared, &view),
    }))
}

/// op-node's `SyncStatus`: the head is the unsafe L2 head; the safe and
/// finalized heads are the batcher's, with the L1 blocks their batches
/// landed in (genesis and null before any batch is read back).
fn status(shared: &Shared, view: &ChainView) -> Value {
    let head = view.head();
    let genesis =
        view.blocks().next().filter(|b| b.header.number == 0).map_or_else(|| json!(null), |g| l2_ref(shared, g));
    let current_l1 = head.op.as_ref().map(|op| l1_ref(&op.origin));
    let head_l1 = shared.op.as_ref().and_then(|op| op.l1_tip()).map(|tip| l1_ref(&tip));
    let unsafe_l2 = l2_ref(shared, head);
    let heads = shared.batcher.as_ref().and_then(|b| b.heads());
    let l2_of = |posted: Option<crate::batcher::Posted>| {
        posted.and_then(|p| view.block(p.l2)).map_or_else(|| genesis.clone(), |block| l2_ref(shared, block))
    };
    let l1_of = |posted: Option<crate::batcher::Posted>| {
        posted.map_or(json!(null), |p| json!({ "hash": p.l1_hash, "number": p.l1 }))
    };
    let (safe, finalized, posted) = (heads.map(|h| h.safe), heads.map(|h| h.finalized), heads.map(|h| h.posted));
    json!({
        "current_l1": current_l1,
        "current_l1_finalized": null,
        "head_l1": head_l1,
        "safe_l1": l1_of(safe),
        "finalized_l1": l1_of(finalized),
        "unsafe_l2": unsafe_l2,
        "safe_l2": l2_of(safe),
        "finalized_l2": l2_of(finalized),
        "pending_safe_l2": l2_of(posted),
        "cross_unsafe_l2": unsafe_l2,
        "local_safe_l2": l2_of(safe),
    })
}

fn l1_ref(block: &tephra_l1::L1Block) -> Value {
    json!({ "hash": block.hash, "number": block.number, "parentHash": block.parent_hash, "timestamp": block.timestamp })
}

/// op-node's `L2BlockRef`; genesis's L1 origin is the rollup's genesis L1 block.
fn l2_ref(shared: &Shared, block: &StoredBlock) -> Value {
    let (origin, sequence_number) = match (&block.op, &shared.op) {
        (Some(op), _) => (json!({ "hash": op.origin.hash, "number": op.origin.number }), op.sequence_number),
        (None, Some(op)) => (json!(op.rollup.genesis.l1), 0),
        (None, None) => (json!(null), 0),
    };
    json!({
        "hash": block.hash,
        "number": block.header.number,
        "parentHash": block.header.parent_hash,
        "timestamp": block.header.timestamp,
        "l1origin": origin,
        "sequenceNumber": sequence_number,
    })
}
