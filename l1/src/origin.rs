//! The sequencer's choice of each L2 block's L1 origin (op-node's
//! `L1OriginSelector`; specs/protocol/derivation.md, "L2 chain derivation"
//! constraints and the batch queue's drift rule). A pure function: the
//! current origin, the next L1 block if the follower has it confirmed, the
//! timestamp of the L2 block being built and the drift limit in, a choice
//! out.
//!
//! The rules, each a test below:
//! - the origin moves forward one L1 block at a time, to a child of the
//!   current one;
//! - an L2 block's timestamp is at or after its origin's;
//! - the origin advances as soon as the next L1 block's timestamp is at or
//!   before the L2 timestamp;
//! - past the drift (`l2_timestamp > origin.timestamp + max_sequencer_drift`)
//!   the origin must advance; when it cannot because the next L1 block is
//!   later than the L2 block, the block keeps its origin without user
//!   transactions (derivation.md: "the sequencer enforces
//!   `len(batch.transactions) == 0` while `max_sequencer_drift` is
//!   exceeded"); when the next L1 block is not known, the sequencer holds.

use tephra_types::rollup::RollupConfig;

use crate::L1Block;

/// Fjord made `max_sequencer_drift` a constant of 30 minutes
/// (specs/protocol/fjord/derivation.md), in force from the first L1 origin
/// at or after Fjord's activation.
pub const MAX_SEQUENCER_DRIFT_FJORD_S: u64 = 1800;

/// What the L2 block being built takes as its L1 origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OriginChoice {
    /// The current origin, user transactions allowed.
    Keep,
    /// The current origin, past the drift: only deposits (the L1-info one),
    /// no user transactions.
    KeepWithoutTransactions,
    /// The next L1 block: a new epoch (sequence number 0, its deposits).
    Advance(L1Block),
    /// No block can be built yet.
    Hold { reason: HoldReason },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HoldReason {
    /// Past the drift, and the next L1 block is not known yet.
    NextOriginUnknown { l2_timestamp: u64, drift_deadline: u64 },
    /// The L2 timestamp is before the origin's: no block may have it.
    BeforeOrigin { l2_timestamp: u64, origin_timestamp: u64 },
    /// The block offered as next is not the current origin's child.
    NotTheNextBlock { current: u64, offered: u64 },
}

/// The drift limit for L1 origin timestamp `origin_timestamp`: the Fjord
/// constant once Fjord is active at it, the rollup config's before.
pub fn max_sequencer_drift_s(config: &RollupConfig, origin_timestamp: u64) -> u64 {
    if config.is_active("fjord_time", origin_timestamp) {
        MAX_SEQUENCER_DRIFT_FJORD_S
    } else {
        config.max_sequencer_drift
    }
}

/// The L1 origin of the L2 block at `l2_timestamp`, built on a block whose
/// origin is `current`; `next` is the L1 block after `current` if the
/// follower has it confirmed.
pub fn choose_origin(
    current: &L1Block,
    next: Option<&L1Block>,
    l2_timestamp: u64,
    max_sequencer_drift_s: u64,
) -> OriginChoice {
    if let Some(next) = next {
        if next.number != current.number.saturating_add(1) || next.parent_hash != current.hash {
            return OriginChoice::Hold {
                reason: HoldReason::NotTheNextBlock { current: current.number, offered: next.number },
            };
        }
        if next.timestamp <= l2_timestamp {
            return OriginChoice::Advance(next.clone());
        }
    }
    if l2_timestamp < current.timestamp {
        return OriginChoice::Hold {
            reason: HoldReason::BeforeOrigin { l2_timestamp, origin_timestamp: current.timestamp },
        };
    }
    let drift_deadline = current.timestamp.saturating_add(max_sequencer_drift_s);
    match (l2_timestamp > drift_deadline, next) {
        (false, _) => OriginChoice::Keep,
        // Past the drift, the next block known and later than this L2 block:
        // advancing would put the L2 block before its origin.
        (true, Some(_)) => OriginChoice::KeepWithoutTransactions,
        (true, None) => OriginChoice::Hold { reason: HoldReason::NextOriginUnknown { l2_timestamp, drift_deadline } },
    }
}

#[cfg(test)]
mod tests {
    use alloy_primitives::B256;

    use super::*;

    const DRIFT_S: u64 = 1800;

    fn block(number: u64, timestamp: u64) -> L1Block {
        L1Block {
            number,
            hash: B256::with_last_byte(u8::try_from(number).unwrap()),
            parent_hash: B256::with_last_byte(u8::try_from(number - 1).unwrap()),
            timestamp,
            base_fee_per_gas: 1,
            excess_blob_gas: None,
            blob_gas_used: None,
            mix_hash: B256::ZERO,
            parent_beacon_block_root: None,
        }
    }

    #[test]
    fn the_origin_is_kept_while_the_next_l1_block_is_later_or_unknown() {
        let current = block(10, 1000);
        assert_eq!(choose_origin(&current, None, 1000, DRIFT_S), OriginChoice::Keep);
        assert_eq!(
            choose_origin(&current, None, 1000 + DRIFT_S, DRIFT_S),
            OriginChoice::Keep,
            "at the drift, not past it"
        );
        assert_eq!(choose_origin(&current, Some(&block(11, 1012)), 1011, DRIFT_S), OriginChoice::Keep);
    }

    #[test]
    fn the_origin_advances_as_soon_as_the_next_block_is_not_later_than_the_l2_block() {
        let (current, next) = (block(10, 1000), block(11, 1012));
        assert_eq!(choose_origin(&current, Some(&next), 1012, DRIFT_S), OriginChoice::Advance(next.clone()));
        assert_eq!(choose_origin(&current, Some(&next), 1013, DRIFT_S), OriginChoice::Advance(next.clone()));
        // Even far past the drift, one block at a time.
        assert_eq!(choose_origin(&current, Some(&next), 1000 + 10 * DRIFT_S, DRIFT_S), OriginChoice::Advance(next));
    }

    #[test]
    fn only_the_current_origins_child_can_be_the_next_origin() {
        let current = block(10, 1000);
        let skipping = block(12, 1024);
        let hold = |offered| OriginChoice::Hold { reason: HoldReason::NotTheNextBlock { current: 10, offered } };
        assert_eq!(choose_origin(&current, Some(&skipping), 1030, DRIFT_S), hold(12));
        let mut sibling = block(11, 1012);
        sibling.parent_hash = B256::repeat_byte(0xee);
        assert_eq!(choose_origin(&current, Some(&sibling), 1030, DRIFT_S), hold(11));
        assert_eq!(choose_origin(&current, Some(&block(10, 1000)), 1030, DRIFT_S), hold(10));
    }

    #[test]
    fn an_l2_timestamp_before_its_origin_holds() {
        let current = block(10, 1000);
        assert_eq!(
            choose_origin(&current, None, 999, DRIFT_S),
            OriginChoice::Hold { reason: HoldReason::BeforeOrigin { l2_timestamp: 999, origin_timestamp: 1000 } }
        );
    }

    #[test]
    fn past_the_drift_the_origin_must_advance_or_the_block_carries_no_transactions() {
        let current = block(10, 1000);
        let past = 1000 + DRIFT_S + 1;
        assert_eq!(
            choose_origin(&current, None, past, DRIFT_S),
            OriginChoice::Hold {
                reason: HoldReason::NextOriginUnknown { l2_timestamp: past, drift_deadline: 1000 + DRIFT_S }
            }
        );
        // The next L1 block exists but is later than the L2 block (an L1 that
        // stalled, then produced a block far ahead).
        assert_eq!(
            choose_origin(&current, Some(&block(11, past + 5)), past, DRIFT_S),
            OriginChoice::KeepWithoutTransactions
        );
        assert_eq!(
            choose_origin(&current, Some(&block(11, past)), past, DRIFT_S),
            OriginChoice::Advance(block(11, past))
        );
        // A drift limit that overflows a timestamp is no limit, not a panic.
        assert_eq!(choose_origin(&current, None, u64::MAX, u64::MAX), OriginChoice::Keep);
    }

    #[test]
    fn fjord_makes_the_drift_a_constant_from_its_activation() {
        let json = include_str!("../../testdata/op/420110017-rollup.json");
        let mut config = RollupConfig::from_json(json).unwrap();
        assert_eq!(config.max_sequencer_drift, 600);
        assert_eq!(max_sequencer_drift_s(&config, 0), MAX_SEQUENCER_DRIFT_FJORD_S, "Fjord at genesis");
        config.fjord_time = Some(5000);
        assert_eq!(max_sequencer_drift_s(&config, 4999), 600);
        assert_eq!(max_sequencer_drift_s(&config, 5000), MAX_SEQUENCER_DRIFT_FJORD_S);
    }
}
