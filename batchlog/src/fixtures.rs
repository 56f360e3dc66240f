//! What the unit tests share: one record of each kind, and a log of them.

use std::{
    fs,
    path::{Path, PathBuf},
};

use alloy_primitives::{Address, B256, Bytes, Log, LogData};

use crate::{L1OriginRecord, LogWriter, OpOpenRecord, OpenRecord, ReceiptRecord, Record, segment::segment_path};

/// A scratch directory for the test `name`'s log.
pub(crate) fn fresh_dir(name: &str) -> PathBuf {
    tephra_testkit::fresh_dir(&format!("log-{name}"))
}

/// An Open, a Batch, a Sealed and a Signed record of block 1.
pub(crate) fn samples() -> Vec<Record> {
    vec![
        Record::Open(OpenRecord {
            number: 1,
            parent_hash: B256::repeat_byte(1),
            timestamp: 7,
            beneficiary: Address::repeat_byte(2),
            prevrandao: B256::repeat_byte(3),
            extra_data: Bytes::from_static(b"tephra"),
            gas_limit: 30_000_000,
            base_fee_per_gas: 1_000_000_000,
            op: None,
        }),
        Record::Batch { number: 1, txs: vec![(Address::repeat_byte(4), Bytes::from_static(&[1, 2, 3]))] },
        Record::Sealed {
            number: 1,
            header_rlp: Bytes::from_static(&[0xc0]),
            receipts: vec![ReceiptRecord {
                success: true,
                cumulative_gas_used: 21_000,
                logs: vec![Log {
                    address: Address::repeat_byte(5),
                    data: LogData::new_unchecked(vec![B256::repeat_byte(6)], Bytes::from_static(b"data")),
                }],
                deposit_nonce: None,
            }],
        },
        Record::Signed { number: 1, hash: B256::repeat_byte(7), signature: [8; 65] },
    ]
}

/// An OP Stack block's Open record (with and without optional L1 fields),
/// a Sealed record with a deposit's receipt and a rewind.
pub(crate) fn op_samples() -> Vec<Record> {
    let Record::Open(open) = samples().remove(0) else { unreachable!("the first sample opens") };
    let origin = L1OriginRecord {
        number: 9,
        hash: B256::repeat_byte(9),
        parent_hash: B256::repeat_byte(8),
        timestamp: 5,
        base_fee_per_gas: 7,
        excess_blob_gas: Some(0),
        blob_gas_used: None,
        mix_hash: B256::repeat_byte(4),
        parent_beacon_block_root: Some(B256::repeat_byte(3)),
    };
    let op = OpOpenRecord {
        origin: origin.clone(),
        sequence_number: 2,
        eip1559_params: [0, 0, 0, 250, 0, 0, 0, 6],
        deposits_only: false,
        deposits: vec![Bytes::from_static(&[0x7e, 0xc0]), Bytes::from_static(&[0x7e, 0xc1, 0x80])],
    };
    let bare = OpOpenRecord {
        origin: L1OriginRecord { excess_blob_gas: None, parent_beacon_block_root: None, ..origin },
        deposits: Vec::new(),
        deposits_only: true,
        ..op.clone()
    };
    let receipt =
        ReceiptRecord { success: false, cumulative_gas_used: 50_000, logs: Vec::new(), deposit_nonce: Some(3) };
    vec![
        Record::Open(OpenRecord { op: Some(op), ..open.clone() }),
        Record::Open(OpenRecord { op: Some(bare), ..open }),
        Record::Sealed { number: 1, header_rlp: Bytes::from_static(&[0xc0]), receipts: vec![receipt] },
        Record::Rewind { number: 4, hash: B256::repeat_byte(5) },
    ]
}

/// Writes `samples()` as one committed segment: its path and bytes.
pub(crate) fn write_samples(dir: &Path) -> (PathBuf, Vec<u8>) {
    let mut writer = LogWriter::open(dir, 1 << 20, 0).unwrap();
    for record in samples() {
        writer.append(&record).unwrap();
    }
    writer.commit().unwrap();
    let path = segment_path(dir, 1);
    let bytes = fs::read(&path).unwrap();
    (path, bytes)
}
