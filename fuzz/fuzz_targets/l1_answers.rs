//! What an L1 node and an operator hand an OP Stack sequencer: JSON-RPC
//! blocks and logs, TransactionDeposited logs, L1-info calldata, deposit
//! transactions (as the batch log keeps them) and op-node's rollup.json.
//! Decoding never panics; what is refused is an error; a deposit that
//! decodes encodes back to the same bytes.
#![no_main]

use alloy_primitives::{B256, Bytes};
use libfuzzer_sys::fuzz_target;
use tephra_l1::{L1Log, deposit::decode_deposit_log, l1_info::L1InfoIsthmus, rpc};
use tephra_types::{deposit::Deposit, rollup::RollupConfig};

fuzz_target!(|bytes: &[u8]| {
    let _ = L1InfoIsthmus::decode(bytes);
    if let Ok(deposit) = Deposit::decode_2718(bytes) {
        assert_eq!(deposit.encode_2718().as_ref(), bytes, "a decoded deposit re-encodes as it came");
    }
    // A deposit log: four topics from the first 128 bytes, the rest its data.
    if bytes.len() >= 128 {
        let topics = bytes[..128].chunks(32).map(B256::from_slice).collect();
        let log = L1Log {
            address: Default::default(),
            topics,
            data: Bytes::copy_from_slice(&bytes[128..]),
            block_hash: B256::ZERO,
            log_index: 0,
        };
        let _ = decode_deposit_log(&log);
    }
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let _ = RollupConfig::from_json(text);
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        let _ = rpc::block_from_json(&value);
        let _ = rpc::log_from_json(&value);
    }
});
