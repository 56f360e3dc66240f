//! The error objects RPC answers with: the codes wallets expect (geth's,
//! EIP-1474's, EIP-7966's), tephra's stable rejection code in their data.

use alloy_primitives::{Bytes, U256};
use jsonrpsee::types::ErrorObjectOwned;
use serde_json::json;
use tephra_exec::call::HaltReason;
use tephra_types::Reject;

/// Generic server error, as geth uses it for rejected transactions.
pub(super) const SERVER_ERROR: i32 = -32000;
pub(super) const INVALID_PARAMS: i32 = -32602;
/// EIP-1474's code for a request over a limit.
pub(super) const LIMIT_EXCEEDED: i32 = -32005;
/// EIP-7966: the transaction did not make it in time / the node is not ready.
pub(super) const SYNC_TIMEOUT: i32 = 4;
pub(super) const SYNC_NOT_READY: i32 = 5;
/// geth's code for a reverted eth_call / eth_estimateGas.
pub(super) const EXECUTION_REVERTED: i32 = 3;

pub(super) fn error(code: i32, message: impl Into<String>, data: Option<serde_json::Value>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, message.into(), data)
}

pub(super) fn invalid(message: impl Into<String>) -> ErrorObjectOwned {
    error(INVALID_PARAMS, message, None)
}

/// A rejection: geth's code and message style, tephra's stable code in data.
pub(super) fn rejected(reject: &Reject) -> ErrorObjectOwned {
    error(
        SERVER_ERROR,
        format!("{}: {}", reject.code.text(), reject.detail),
        Some(json!({"code": reject.code.as_u16(), "reason": reject.code.text()})),
    )
}

/// geth's shape for a revert: code 3, the reason decoded where it is an
/// `Error(string)`, the raw data attached.
pub(super) fn revert_error(output: &Bytes) -> ErrorObjectOwned {
    let reason = (output.len() >= 68 && output[..4] == [0x08, 0xc3, 0x79, 0xa0])
        .then(|| {
            let len = usize::try_from(U256::from_be_slice(&output[36..68])).ok()?;
            // A length near usize::MAX would overflow the end: no reason then.
            let end = len.checked_add(68)?;
            output.get(68..end).and_then(|s| std::str::from_utf8(s).ok()).map(str::to_owned)
        })
        .flatten();
    let message = reason.map_or("execution reverted".to_string(), |r| format!("execution reverted: {r}"));
    error(EXECUTION_REVERTED, message, Some(json!(output)))
}

pub(super) fn halted_error(reason: &HaltReason) -> ErrorObjectOwned {
    error(SERVER_ERROR, format!("execution halted: {reason:?}"), None)
}
