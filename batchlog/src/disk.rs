//! The log on disk as a source of frames for replication: records older
//! than a leader's in-memory window, read back for a standby that is behind.

use std::{
    collections::BTreeMap,
    fs, io,
    path::{Path, PathBuf},
    sync::Mutex,
};

use crate::{
    frame::{HEADER_BYTES, parse_frame},
    segment::{segment_indices, segment_path},
};

/// Reads frames back from the log in a directory. Segments other than the
/// last never change, so their record counts are kept once counted.
#[derive(Debug)]
pub struct DiskLog {
    dir: PathBuf,
    /// Record count by segment index, for segments before the last.
    counts: Mutex<BTreeMap<u64, u64>>,
}

impl DiskLog {
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_path_buf(), counts: Mutex::default() }
    }

    /// Appends the frames of records `first..end` to `out`, stopping before
    /// `out` passes `bytes_max` (at least one record if there is one);
    /// returns how many records it appended.
    pub fn read_frames(&self, first: u64, end: u64, bytes_max: usize, out: &mut Vec<u8>) -> io::Result<u64> {
        let indices = segment_indices(&self.dir)?;
        let mut seen = 0u64;
        for (position, &index) in indices.iter().enumerate() {
            let is_last = position + 1 == indices.len();
            let known = self.counts.lock().expect("counts lock").get(&index).copied();
            if let Some(count) = known
                && seen + count <= first
            {
                seen += count;
                continue;
            }
            let bytes = fs::read(segment_path(&self.dir, index))?;
            let mut offset = 0usize;
            let mut count = 0u64;
            let mut sent = 0u64;
            while let Ok(payload) = parse_frame(&bytes[offset..]) {
                let len = HEADER_BYTES + payload.len();
                let at = seen + count;
                if at >= first {
                    if at >= end || (sent > 0 && out.len() + len > bytes_max) {
                        return Ok(sent);
                    }
                    out.extend_from_slice(&bytes[offset..offset + len]);
                    sent += 1;
                }
                offset += len;
                count += 1;
            }
            if !is_last {
                self.counts.lock().expect("counts lock").insert(index, count);
            }
            if sent > 0 {
                return Ok(sent);
            }
            seen += count;
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use alloy_primitives::{Address, Bytes};

    use super::*;
    use crate::{LogWriter, Record, fixtures::fresh_dir, read_all, split_frames, truncate};

    /// The records of the truncation test: Batches, an Epoch every 50.
    fn record(i: u64) -> Record {
        match i % 50 {
            0 if i > 0 => Record::Epoch { epoch: i },
            _ => Record::Batch { number: i, txs: vec![(Address::ZERO, Bytes::from(vec![i.to_le_bytes()[0]; 300]))] },
        }
    }

    #[test]
    fn truncation_keeps_a_prefix_and_the_disk_source_serves_any_range() {
        let dir = fresh_dir("truncate");
        // Small segments: records spread over several files.
        let mut writer = LogWriter::open(&dir, 4096, 0).unwrap();
        let expected: Vec<Record> = (0..200).map(record).collect();
        for r in &expected {
            writer.append(r).unwrap();
        }
        writer.commit().unwrap();
        assert_eq!(writer.records(), 200);
        drop(writer);
        let source = DiskLog::new(&dir);
        for (first, end) in [(0usize, 200usize), (37, 41), (120, 200), (199, 200)] {
            let mut got = Vec::new();
            let mut at = first as u64;
            while at < end as u64 {
                let mut frames = Vec::new();
                let n = source.read_frames(at, end as u64, 2000, &mut frames).unwrap();
                assert!(n > 0);
                got.extend(split_frames(&frames).unwrap().into_iter().map(|(_, r)| r));
                at += n;
            }
            let want = &expected[first..end];
            let differ = got.iter().zip(want).position(|(a, b)| a != b);
            assert!(
                got.len() == want.len() && differ.is_none(),
                "{first}..{end}: {} records, first difference at {differ:?}",
                got.len()
            );
        }
        assert_eq!(truncate(&dir, 133).unwrap(), 67);
        assert_eq!(read_all(&dir, |_, _, _| panic!("no tear")).unwrap(), expected[..133]);
        // The writer goes on from the cut.
        let mut writer = LogWriter::open(&dir, 4096, 133).unwrap();
        writer.append(&Record::Epoch { epoch: 999 }).unwrap();
        writer.commit().unwrap();
        let after = read_all(&dir, |_, _, _| panic!("no tear")).unwrap();
        assert_eq!((after.len(), after.last()), (134, Some(&Record::Epoch { epoch: 999 })));
        assert!(split_frames(&[1, 2, 3]).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
