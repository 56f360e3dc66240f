//! What an OP Stack user transaction paid besides gas, as its receipt
//! reports it (op-geth's `l1Fee`, `l1GasUsed`, `l1GasPrice` and the
//! scalars): computed by op-revm from the block's L1 fee parameters, the
//! same code that charged it.

use alloy_primitives::U256;
use op_revm::{L1BlockInfo, OpSpecId};

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
