//! What an OP Stack user transaction paid besides gas, as its receipt
//! reports it (op-geth's `l1Fee`, `l1GasUsed`, `l1GasPrice` and the
//! scalars): computed by op-revm from the block's L1 fee parameters, the
//! same code that charged it.

use alloy_primitives::U256;
use op_revm::{L1BlockInfo, OpSpecId};

/// Fjord's FastLZ-estimated size of a transaction's EIP-2718 bytes: what
/// its L1 data fee is charged on (op-revm's `estimate_tx_compressed_size`).
pub fn estimate_l1_size(encoded: &[u8]) -> u64 {
    op_revm::estimate_tx_compressed_size(encoded)
}

/// Fjord's L1 data fee of a transaction whose FastLZ-estimated size
/// (op-revm's `estimate_tx_compressed_size`) is `estimated_size`:
/// `estimatedSize × (l1BaseFee × 16 × baseFeeScalar + blobBaseFee ×
/// blobBaseFeeScalar) / 1e12`, as op-revm's `calculate_tx_l1_cost` (held
/// equal to it by the tests). The verify stage estimates the size, so the
/// sequencer hands op-revm the fee instead of compressing on its core.
pub fn l1_cost_fjord(info: &L1BlockInfo, estimated_size: u64) -> U256 {
    let calldata_cost_per_byte =
        info.l1_base_fee.saturating_mul(U256::from(16)).saturating_mul(info.l1_base_fee_scalar);
    let blob_cost_per_byte =
        info.l1_blob_base_fee.unwrap_or_default().saturating_mul(info.l1_blob_base_fee_scalar.unwrap_or_default());
    let scaled = calldata_cost_per_byte.saturating_add(blob_cost_per_byte);
    U256::from(estimated_size).saturating_mul(scaled).wrapping_div(U256::from(1_000_000_000_000u64))
}

/// The L1 data fee and operator fee of one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpTxFees {
    /// Charged to the sender, paid to the L1 fee vault.
    pub l1_fee: U256,
    /// The L1 gas the fee stands for (Fjord: the FastLZ-estimated size × 16).
    pub l1_gas_used: U256,
    /// Charged on the gas used, paid to the operator fee vault.
    pub operator_fee: U256,
}

/// The fees of the transaction whose EIP-2718 bytes are `encoded`, which
/// used `gas_used`, in a block whose L1 fee parameters are `info`.
pub fn op_tx_fees(info: &L1BlockInfo, encoded: &[u8], gas_used: u64, spec: OpSpecId) -> OpTxFees {
    // A copy: op-revm caches the last fee in the info it computes on.
    let mut info = info.clone();
    info.clear_tx_l1_cost();
    OpTxFees {
        l1_fee: info.calculate_tx_l1_cost(encoded, spec),
        l1_gas_used: info.data_gas(encoded, spec),
        operator_fee: info.operator_fee_charge(encoded, U256::from(gas_used), spec),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::SplitMix64;

    /// The fee from a size estimated ahead is op-revm's own, for any user
    /// transaction's bytes (compressible or not, short or long) and any fee
    /// parameters.
    #[test]
    fn the_fjord_fee_from_the_estimated_size_is_op_revms() {
        let mut rng = SplitMix64(0x0f1e);
        for round in 0..500 {
            let len = 1 + rng.pick(2_000);
            let bytes: Vec<u8> = (0..len)
                .map(|i| if rng.chance(50) { [0, 1, 2, 3, 4, 5, 6][i % 7] } else { rng.next_u64().to_le_bytes()[0] })
                .collect();
            let info = L1BlockInfo {
                l1_base_fee: U256::from(rng.below(1 << 40)),
                l1_base_fee_scalar: U256::from(rng.below(1 << 32)),
                l1_blob_base_fee: Some(U256::from(rng.below(1 << 40))),
                l1_blob_base_fee_scalar: Some(U256::from(rng.below(1 << 32))),
                ..Default::default()
            };
            // A user transaction's first byte is its type (or an RLP list's).
            let mut bytes = bytes;
            bytes[0] = 0x02;
            let size = op_revm::estimate_tx_compressed_size(&bytes);
            let mut theirs = info.clone();
            assert_eq!(
                l1_cost_fjord(&info, size),
                theirs.calculate_tx_l1_cost(&bytes, OpSpecId::ISTHMUS),
                "round {round}, {len} bytes"
            );
        }
    }
}
