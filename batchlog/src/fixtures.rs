//! What the unit tests share: one record of each kind, and a log of them.

use std::{
    fs,
    path::{Path, PathBuf},
};

use alloy_primitives::{Address, B256, Bytes, Log, LogData};

use crate::{LogWriter, OpenRecord, ReceiptRecord, Record, segment::segment_path};

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
            }],
        },
        Record::Signed { number: 1, hash: B256::repeat_byte(7), signature: [8; 65] },
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
