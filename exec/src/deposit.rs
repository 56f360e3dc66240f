//! deposits: an OP Stack block's first transactions, executed sequentially
//! when the block opens (before any sequenced batch), with their receipts.
//!
//! op-revm applies the deposit rules (mint first, no signature or fee, the
//! nonce bumped and the mint kept even when the deposit fails); this module
//! keeps the receipt fields op-geth adds: the sender's nonce before the
//! deposit and, from Canyon, the receipt version.

use alloy_consensus::{Eip658Value, Receipt, ReceiptWithBloom};
use alloy_primitives::{Address, B256, Bloom, Bytes, Log};
use alloy_rlp::{Encodable, Header};
use op_revm::OpSpecId;
use tephra_types::{
    Reject,
    deposit::{DEPOSIT_TX_TYPE, Deposit},
};

use crate::{evm, params::BlockParams, state::StateDb};

/// The receipt version op-geth writes for deposits from Canyon on.
pub const DEPOSIT_RECEIPT_VERSION: u64 = 1;

/// A deposit executed into the open block.
#[derive(Clone, Debug)]
pub struct ExecutedDeposit {
    pub deposit: Deposit,
    pub hash: B256,
    /// The EIP-2718 encoding the transactions root commits to.
    pub encoded: Bytes,
    /// Status, cumulative gas (counting the block's deposits before it) and logs.
    pub receipt: Receipt<Log>,
    pub gas_used: u64,
    /// The sender's nonce before the deposit: the receipt's depositNonce.
    pub deposit_nonce: u64,
    /// Canyon on: the receipt's depositReceiptVersion, which the receipts
    /// root commits to with the nonce (before Canyon it commits to neither).
    pub receipt_version: Option<u64>,
    /// For a creation, the address it deploys to (set even if it failed).
    pub contract_address: Option<Address>,
}

impl ExecutedDeposit {
    /// The receipt as the receipts trie holds it (op-geth's `EncodeIndex`):
    /// `0x7E ‖ rlp([status, cumulativeGas, bloom, logs, depositNonce,
    /// depositReceiptVersion])`, the last two from Canyon on.
    pub(crate) fn receipt_leaf(&self, bloom: &mut Bloom, out: &mut Vec<u8>) {
        let with_bloom = ReceiptWithBloom::from(self.receipt.clone());
        *bloom |= with_bloom.logs_bloom;
        let canyon = self.receipt_version.map(|version| (self.deposit_nonce, version));
        let fields_length = with_bloom.receipt.status.length()
            + with_bloom.receipt.cumulative_gas_used.length()
            + with_bloom.logs_bloom.length()
            + with_bloom.receipt.logs.length()
            + canyon.map_or(0, |(nonce, version)| nonce.length() + version.length());
        out.push(DEPOSIT_TX_TYPE);
        Header { list: true, payload_length: fields_length }.encode(out);
        with_bloom.receipt.status.encode(out);
        with_bloom.receipt.cumulative_gas_used.encode(out);
        with_bloom.logs_bloom.encode(out);
        with_bloom.receipt.logs.encode(out);
        if let Some((nonce, version)) = canyon {
            nonce.encode(out);
            version.encode(out);
        }
    }
}

/// Executes `deposits` in order on `state` into the block `block` opens.
pub(crate) fn execute_deposits(
    state: &mut StateDb,
    block: &BlockParams,
    deposits: Vec<Deposit>,
) -> Result<Vec<ExecutedDeposit>, Reject> {
    let canyon = block.op_spec.is_some_and(|spec| spec.is_enabled_in(OpSpecId::CANYON));
    let mut executed = Vec::with_capacity(deposits.len());
    let mut cumulative_gas_used = 0;
    let mut vm = evm::state_evm(state, block);
    for deposit in deposits {
        let deposit_nonce = evm::db_of(&mut vm).nonce(&deposit.from);
        let result = evm::transact_deposit(&mut vm, &deposit)?;
        let gas_used = result.gas().tx_gas_used();
        cumulative_gas_used += gas_used;
        let receipt =
            Receipt { status: Eip658Value::Eip658(result.is_success()), cumulative_gas_used, logs: result.into_logs() };
        let contract_address = deposit.to.is_none().then(|| deposit.from.create(deposit_nonce));
        let encoded = deposit.encode_2718();
        executed.push(ExecutedDeposit {
            hash: alloy_primitives::keccak256(&encoded),
            encoded,
            deposit,
            receipt,
            gas_used,
            deposit_nonce,
            receipt_version: canyon.then_some(DEPOSIT_RECEIPT_VERSION),
            contract_address,
        });
    }
    Ok(executed)
}
