//! An L1 block as the sequencer needs it (its place in the chain, its
//! timestamp and fees), a log of one, and EIP-4844's blob base fee.

use alloy_primitives::{Address, B256, Bytes, U256};

/// EIP-4844's `MIN_BASE_FEE_PER_BLOB_GAS`; also the L1-info blob base fee of
/// an L1 block without blob fields (ecotone/l1-attributes.md).
pub const MIN_BLOB_BASE_FEE_WEI: u64 = 1;

/// EIP-4844 (Cancun): `BLOB_BASE_FEE_UPDATE_FRACTION`.
pub const BLOB_BASE_FEE_UPDATE_FRACTION_CANCUN: u64 = 3_338_477;

/// EIP-7691 (Prague): `BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE`. Which fraction
/// an L1 block uses depends on the L1 chain's fork at its timestamp, which
/// the caller knows (its L1 chain config), not the block.
pub const BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE: u64 = 5_007_716;

/// An L1 block header, the fields the sequencer uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L1Block {
    pub number: u64,
    pub hash: B256,
    pub parent_hash: B256,
    pub timestamp: u64,
    pub base_fee_per_gas: u64,
    /// EIP-4844 (Cancun on): None on an L1 without blobs.
    pub excess_blob_gas: Option<u64>,
    pub blob_gas_used: Option<u64>,
    /// `prevRandao` since the merge.
    pub mix_hash: B256,
    /// EIP-4788 (Cancun on): the beacon root an OP Stack block carries from
    /// its origin (Ecotone on).
    pub parent_beacon_block_root: Option<B256>,
}

impl L1Block {
    /// The block's blob base fee under `update_fraction` (one of the
    /// `BLOB_BASE_FEE_UPDATE_FRACTION_*` consts, by the L1 fork at this
    /// block); `MIN_BLOB_BASE_FEE_WEI` for a block without blob fields.
    pub fn blob_base_fee(&self, update_fraction: u64) -> U256 {
        match self.excess_blob_gas {
            None => U256::from(MIN_BLOB_BASE_FEE_WEI),
            Some(excess) => fake_exponential(MIN_BLOB_BASE_FEE_WEI, excess, update_fraction),
        }
    }
}

/// A log as `eth_getLogs` returns it, the fields deposits are derived from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L1Log {
    pub address: Address,
    pub topics: Vec<B256>,
    pub data: Bytes,
    pub block_hash: B256,
    /// The log's index among all logs of its block (deposit source hashes
    /// commit to it).
    pub log_index: u64,
}

/// EIP-4844's `fake_exponential(factor, numerator, denominator)`: the
/// integer approximation of `factor * e ** (numerator / denominator)`.
///
/// Exact for every result below 2^256. A larger one (an exponent over about
/// 170, a blob fee no L1 reaches) saturates at `U256::MAX` at the first
/// overflow, which also bounds the loop: without overflow the terms peak
/// near term `numerator / denominator` (< 180) and then fall to zero within
/// a few hundred more. A zero denominator (a caller's bug) saturates too.
pub fn fake_exponential(factor: u64, numerator: u64, denominator: u64) -> U256 {
    if denominator == 0 {
        return U256::MAX;
    }
    let (numerator, denominator) = (U256::from(numerator), U256::from(denominator));
    let mut output = U256::ZERO;
    let mut accumulator = U256::from(factor) * denominator;
    let mut term = U256::from(1);
    while !accumulator.is_zero() {
        let (Some(sum), Some(product)) = (output.checked_add(accumulator), accumulator.checked_mul(numerator)) else {
            return U256::MAX;
        };
        output = sum;
        accumulator = product / (denominator * term);
        term += U256::from(1);
    }
    output / denominator
}

#[cfg(test)]
mod tests {
    use super::*;

    /// go-ethereum's TestFakeExponential vectors
    /// (consensus/misc/eip4844/eip4844_test.go), the EIP's reference values.
    #[test]
    fn fake_exponential_matches_the_reference_vectors() {
        let vectors: [(u64, u64, u64, u64); 15] = [
            (1, 0, 1, 1),
            (38_493, 0, 1000, 38_493),
            (0, 1234, 2345, 0),
            (1, 2, 1, 6),
            (1, 4, 2, 6),
            (1, 3, 1, 16),
            (1, 6, 2, 18),
            (1, 4, 1, 49),
            (1, 8, 2, 50),
            (10, 8, 2, 542),
            (11, 8, 2, 596),
            (1, 5, 1, 136),
            (1, 5, 2, 11),
            (2, 5, 2, 23),
            (1, 50_000_000, 2_225_652, 5_709_098_764),
        ];
        for (factor, numerator, denominator, want) in vectors {
            assert_eq!(
                fake_exponential(factor, numerator, denominator),
                U256::from(want),
                "{factor} {numerator} {denominator}"
            );
        }
    }

    #[test]
    fn blob_base_fee_follows_the_fork_fraction_and_is_one_without_blobs() {
        let mut block = L1Block {
            number: 1,
            hash: B256::ZERO,
            parent_hash: B256::ZERO,
            timestamp: 0,
            base_fee_per_gas: 7,
            excess_blob_gas: None,
            blob_gas_used: None,
            mix_hash: B256::ZERO,
            parent_beacon_block_root: None,
        };
        assert_eq!(block.blob_base_fee(BLOB_BASE_FEE_UPDATE_FRACTION_CANCUN), U256::from(1));
        // 0x240000 excess: e^0.707 under Cancun, e^0.471 under Prague.
        block.excess_blob_gas = Some(0x24_0000);
        assert_eq!(block.blob_base_fee(BLOB_BASE_FEE_UPDATE_FRACTION_CANCUN), U256::from(2));
        assert_eq!(block.blob_base_fee(BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE), U256::from(1));
    }

    #[test]
    fn an_absurd_excess_saturates_instead_of_looping_or_panicking() {
        assert_eq!(fake_exponential(1, u64::MAX, BLOB_BASE_FEE_UPDATE_FRACTION_CANCUN), U256::MAX);
        assert_eq!(fake_exponential(u64::MAX, u64::MAX, 1), U256::MAX);
        assert_eq!(fake_exponential(1, 1, 0), U256::MAX);
        // Just below saturation the series is still exact: e^100 < 2^145.
        let big = fake_exponential(1, 100 * 3_338_477, 3_338_477);
        assert!(big > U256::from(1u128 << 100) && big < U256::from(1) << 145, "{big}");
    }
}
