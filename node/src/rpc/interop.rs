//! The Hyperlane validator's checkpoints over JSON-RPC (`src/interop.rs`):
//! `tephra_latestCheckpoint` and `tephra_getCheckpoint(index)`, each the
//! signed checkpoint as the checkpoint syncer's file holds it, with what
//! was attested (preconfirmed or sealed) and the validator that signed it.

use jsonrpsee::types::Params;
use serde_json::{Value, json};

use super::{
    RpcResult,
    errors::{SERVER_ERROR, error, invalid},
    params::{list, parse_u64},
};
use crate::{interop::ValidatorStatus, shared::Shared};

fn validator(shared: &Shared) -> Result<&ValidatorStatus, jsonrpsee::types::ErrorObjectOwned> {
    let none = || error(SERVER_ERROR, "this node runs no Hyperlane validator ([interop] validator)", None);
    shared.validator.get().map(|status| status.as_ref()).ok_or_else(none)
}

/// The newest signed checkpoint, null before the first.
pub(super) fn latest_checkpoint(shared: &Shared) -> RpcResult {
    let status = validator(shared)?;
    match status.store.latest_index().map_err(store_error)? {
        Some(index) => answer(status, index),
        None => Ok(Value::Null),
    }
}

/// The checkpoint of leaf `index` (a number or a hex quantity).
pub(super) fn checkpoint(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let status = validator(shared)?;
    let index = match list(params)?.first() {
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| invalid(format!("index {n}: not an index")))?,
        Some(Value::String(text)) => parse_u64(text)?,
        _ => return Err(invalid("missing parameter index")),
    };
    let latest = status.store.latest_index().map_err(store_error)?;
    match latest {
        Some(latest) if index <= u64::from(latest) => answer(status, u32::try_from(index).expect("at most latest")),
        _ => Err(invalid(format!(
            "checkpoint {index} is beyond the tree: the newest signed is {}",
            latest.map_or("none yet".to_string(), |latest| latest.to_string())
        ))),
    }
}

fn answer(status: &ValidatorStatus, index: u32) -> RpcResult {
    let signed = status.store.checkpoint(index).map_err(store_error)?;
    let signed =
        signed.ok_or_else(|| error(SERVER_ERROR, format!("checkpoint {index} is missing from the store"), None))?;
    let checkpoint: Value = serde_json::from_str(&signed.to_json()).expect("a signed checkpoint is JSON");
    // Who signed it, as a relayer finds it: the signature recovered.
    Ok(json!({ "checkpoint": checkpoint, "attested": status.attest.as_str(), "validator": signed.signer() }))
}

fn store_error(e: tephra_interop::StoreError) -> jsonrpsee::types::ErrorObjectOwned {
    error(SERVER_ERROR, e.to_string(), None)
}
