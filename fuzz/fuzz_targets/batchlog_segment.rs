//! A batch log segment as read back after a crash: scanning never panics, the
//! good records are exactly the frames before the damage, and each record
//! survives re-encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tephra_batchlog::{Record, scan_segment};

fuzz_target!(|bytes: &[u8]| {
    let scan = scan_segment(bytes);
    let good = scan.damage.as_ref().map_or(bytes.len(), |damage| damage.offset);
    let framed: usize =
        scan.records.iter().map(|record| record.frame().expect("a record read back frames again").len()).sum();
    assert_eq!(framed, good, "the good records cover the bytes before the damage");
    for record in &scan.records {
        let encoded = record.encode().expect("a record read back encodes again");
        assert_eq!(Record::decode(&encoded).as_ref(), Ok(record), "a record survives re-encoding");
    }
});
