//! A validator of any chain, read over JSON-RPC (`tephra interop
//! validate`): Hyperlane's validator as a process of its own, for origins
//! tephra does not sequence, or a second, independent validator of one it
//! does. It reads the hook's insertions from blocks `confirmations` below
//! the head, in ranges, and hands them to the `Attester`.
//!
//! ```text
//! head - confirmations ─> block(position - 1).hash = anchor? (else the chain reorged under it: stop)
//!   ─> eth_getLogs InsertedIntoTree [position, to] ─> Attester ─> position = to + 1, anchor = block(to).hash
//! ```

use alloy_primitives::Address;
use tephra_l1::L1Error;

use crate::{
    attester::{AttestError, Attester, Position},
    chain::{ChainRpc, LOG_RANGE_BLOCKS_MAX},
    events::{INSERTED_INTO_TREE_TOPIC, as_log, inserted_into_tree},
};

#[derive(Debug, thiserror::Error)]
pub enum FollowRpcError {
    #[error("chain: {0}")]
    Chain(#[from] L1Error),
    #[error(transparent)]
    Attest(#[from] AttestError),
    /// The block the position stands on is no longer the chain's: what was
    /// attested may have left it, which only an operator can judge.
    #[error("block {block} is no longer the one the validator read: the chain reorged under it")]
    Reorged { block: u64 },
}

/// One step: the insertions of the next range of confirmed blocks attested;
/// the new checkpoints' count.
pub fn follow_once(
    chain: &dyn ChainRpc,
    attester: &mut Attester,
    hook: Address,
    confirmations: u64,
) -> Result<usize, FollowRpcError> {
    let position = attester.position();
    let head = chain.head_number()?.saturating_sub(confirmations);
    if position.block > head {
        return Ok(0);
    }
    if let Some(anchor) = position.anchor {
        let before = chain.block_by_number(position.block - 1)?;
        if before.map(|block| block.hash) != Some(anchor) {
            return Err(FollowRpcError::Reorged { block: position.block - 1 });
        }
    }
    let to = head.min(position.block + LOG_RANGE_BLOCKS_MAX - 1);
    let logs = chain.logs_in_range(hook, INSERTED_INTO_TREE_TOPIC, position.block, to)?;
    let insertions: Vec<_> = logs.iter().filter_map(|(_, log)| inserted_into_tree(&as_log(log), hook)?.ok()).collect();
    let anchor = chain.block_by_number(to)?.map(|block| block.hash);
    Ok(attester.attest(&insertions, Position { block: to + 1, txs_read: 0, anchor })?)
}
