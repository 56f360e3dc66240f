//! Segment files: `<index>.seg`, twelve digits, frames end to end. Reading
//! the whole log back, truncating a torn tail, cutting the log to a prefix.

use std::{
    fs::{self, File, OpenOptions},
    io,
    path::{Path, PathBuf},
};

use crate::{
    LogError,
    frame::{FrameError, HEADER_BYTES, parse_frame, parse_record},
    record::Record,
};

const SEGMENT_SUFFIX: &str = "seg";

pub(crate) fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{index:012}.{SEGMENT_SUFFIX}"))
}

/// The indices of the segments in `dir`, oldest first.
pub(crate) fn segment_indices(dir: &Path) -> io::Result<Vec<u64>> {
    let mut indices = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(&format!(".{SEGMENT_SUFFIX}"))
            && let Ok(index) = stem.parse::<u64>()
        {
            indices.push(index);
        }
    }
    indices.sort_unstable();
    Ok(indices)
}

/// Makes a segment's creation or removal durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What one segment's bytes hold: the good records from its start, and where
/// and why they stop, if before the end.
#[derive(Debug)]
pub struct SegmentScan {
    pub records: Vec<Record>,
    pub damage: Option<Damage>,
}

#[derive(Debug)]
pub struct Damage {
    pub offset: usize,
    pub reason: FrameError,
    /// No good record follows: what a torn write leaves (cut short, garbage,
    /// or zeros the file system allocated but never wrote). A good record
    /// after the damage means damage inside the durable log.
    pub torn: bool,
}

/// Parses a segment's bytes. Pure: the fuzz target `batchlog_segment` feeds it.
pub fn scan_segment(bytes: &[u8]) -> SegmentScan {
    let mut records = Vec::new();
    let mut offset = 0usize;
    while offset < bytes.len() {
        match parse_record(&bytes[offset..]) {
            Ok((len, record)) => {
                records.push(record);
                offset += len;
            }
            Err(reason) => {
                let torn = !(offset + 1..bytes.len()).any(|at| parse_record(&bytes[at..]).is_ok());
                return SegmentScan { records, damage: Some(Damage { offset, reason, torn }) };
            }
        }
    }
    SegmentScan { records, damage: None }
}

/// Reads every record of the log in `dir`, in order. A torn tail on the last
/// segment is truncated (and reported through `on_torn`: the segment, the
/// offset cut at, why); damage elsewhere is an error.
pub fn read_all(dir: &Path, mut on_torn: impl FnMut(&Path, u64, &FrameError)) -> Result<Vec<Record>, LogError> {
    let mut records = Vec::new();
    let indices = segment_indices(dir)?;
    for (position, &index) in indices.iter().enumerate() {
        let path = segment_path(dir, index);
        let is_last = position + 1 == indices.len();
        let scan = scan_segment(&fs::read(&path)?);
        records.extend(scan.records);
        let Some(damage) = scan.damage else { continue };
        if !is_last || !damage.torn {
            return Err(LogError::Corrupt { segment: path, offset: damage.offset as u64, reason: damage.reason });
        }
        on_torn(&path, damage.offset as u64, &damage.reason);
        let file = OpenOptions::new().write(true).open(&path)?;
        file.set_len(damage.offset as u64)?;
        file.sync_all()?;
    }
    Ok(records)
}

/// Cuts the log in `dir` to its first `keep` records, durably: what a
/// deposed leader wrote that its successor never received. Returns how many
/// records went.
pub fn truncate(dir: &Path, keep: u64) -> Result<u64, LogError> {
    let mut seen = 0u64;
    let mut removed = 0u64;
    for index in segment_indices(dir)? {
        let path = segment_path(dir, index);
        let bytes = fs::read(&path)?;
        let scan = scan_segment(&bytes);
        let count = scan.records.len() as u64;
        if seen + count <= keep {
            seen += count;
            continue;
        }
        // Below this segment's record count, which fits in memory.
        let keep_here = usize::try_from(keep.saturating_sub(seen)).expect("below a segment's count");
        removed += count - keep_here as u64;
        seen += keep_here as u64;
        if keep_here == 0 && index != 1 {
            fs::remove_file(&path)?;
            continue;
        }
        let mut offset = 0usize;
        for _ in 0..keep_here {
            // The scan read these frames whole: no damage comes before them.
            let payload = parse_frame(&bytes[offset..]).map_err(|reason| LogError::Corrupt {
                segment: path.clone(),
                offset: offset as u64,
                reason,
            })?;
            offset += HEADER_BYTES + payload.len();
        }
        let file = OpenOptions::new().write(true).open(&path)?;
        file.set_len(offset as u64)?;
        file.sync_all()?;
    }
    sync_dir(dir)?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use alloy_primitives::{Address, Bytes};

    use super::*;
    use crate::{
        LogWriter,
        fixtures::{fresh_dir, samples, write_samples},
    };

    #[test]
    fn records_round_trip_across_segments() {
        let dir = fresh_dir("roundtrip");
        let mut writer = LogWriter::open(&dir, 1 << 20, 0).unwrap();
        let mut expected = Vec::new();
        for i in 0..20_000u64 {
            let record = Record::Batch { number: i, txs: vec![(Address::ZERO, Bytes::from(vec![0xab; 100]))] };
            writer.append(&record).unwrap();
            expected.push(record);
        }
        for record in samples() {
            writer.append(&record).unwrap();
            expected.push(record);
        }
        writer.commit().unwrap();
        assert!(segment_indices(&dir).unwrap().len() > 1, "rolled to a new segment");
        assert_eq!(read_all(&dir, |_, _, _| panic!("no tear")).unwrap(), expected);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_tail_is_truncated_and_appending_resumes() {
        let dir = fresh_dir("torn");
        let (path, full) = write_samples(&dir);
        // Every cut inside the last record is a torn tail: the first three survive.
        let last_start = full.len() - (HEADER_BYTES + samples()[3].encode().unwrap().len());
        for cut in last_start + 1..full.len() {
            fs::write(&path, &full[..cut]).unwrap();
            let mut torn = 0;
            let records = read_all(&dir, |_, offset, _| {
                torn += 1;
                assert_eq!(offset, last_start as u64);
            })
            .unwrap();
            assert_eq!(records, samples()[..3]);
            assert_eq!(torn, 1);
            assert_eq!(fs::metadata(&path).unwrap().len(), last_start as u64, "truncated");
        }
        // A flipped bit in the last record's payload is torn too.
        let mut flipped = full.clone();
        *flipped.last_mut().unwrap() ^= 1;
        fs::write(&path, &flipped).unwrap();
        assert_eq!(read_all(&dir, |_, _, _| {}).unwrap(), samples()[..3]);
        let mut writer = LogWriter::open(&dir, 1 << 20, 3).unwrap();
        writer.append(&samples()[3]).unwrap();
        writer.commit().unwrap();
        assert_eq!(read_all(&dir, |_, _, _| panic!("no tear")).unwrap(), samples());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Every cut and every flipped byte, anywhere in the log: a cut keeps
    /// exactly the records wholly before it; a flip in the last record drops
    /// that record; a flip anywhere before it is refused. Never a record that
    /// was not written.
    #[test]
    fn every_cut_and_every_flipped_byte_is_detected() {
        let dir = fresh_dir("exhaustive");
        let (path, full) = write_samples(&dir);
        let ends: Vec<usize> = samples()
            .iter()
            .scan(0, |end, record| {
                *end += HEADER_BYTES + record.encode().unwrap().len();
                Some(*end)
            })
            .collect();
        for cut in 0..full.len() {
            fs::write(&path, &full[..cut]).unwrap();
            let whole = ends.iter().filter(|&&end| end <= cut).count();
            assert_eq!(read_all(&dir, |_, _, _| {}).unwrap(), samples()[..whole], "cut at {cut}");
        }
        let last_start = ends[ends.len() - 2];
        for at in 0..full.len() {
            let mut flipped = full.clone();
            flipped[at] ^= 0x5a;
            fs::write(&path, &flipped).unwrap();
            match read_all(&dir, |_, _, _| {}) {
                Ok(records) => {
                    assert!(at >= last_start, "a flip at {at}, before the last record, accepted");
                    assert_eq!(records, samples()[..3], "flip at {at}");
                }
                Err(LogError::Corrupt { offset, .. }) => {
                    assert!(at < last_start, "a flip at {at} in the last record is a torn tail");
                    assert!(offset <= at as u64, "damage reported at {offset}, after the flip at {at}");
                }
                Err(other) => panic!("flip at {at}: {other}"),
            }
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damage_before_the_tail_is_refused() {
        let dir = fresh_dir("corrupt");
        let mut writer = LogWriter::open(&dir, 1 << 20, 0).unwrap();
        for _ in 0..2_000 {
            writer
                .append(&Record::Batch { number: 1, txs: vec![(Address::ZERO, Bytes::from(vec![1; 1000]))] })
                .unwrap();
        }
        writer.commit().unwrap();
        let first = segment_path(&dir, 1);
        let mut bytes = fs::read(&first).unwrap();
        bytes[100] ^= 1;
        fs::write(&first, &bytes).unwrap();
        assert!(matches!(read_all(&dir, |_, _, _| {}), Err(LogError::Corrupt { .. })));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damage_followed_by_good_records_is_refused_even_in_the_last_segment() {
        let dir = fresh_dir("middle");
        let (path, mut bytes) = write_samples(&dir);
        bytes[HEADER_BYTES + 3] ^= 1; // inside the first record's payload
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(read_all(&dir, |_, _, _| {}), Err(LogError::Corrupt { .. })));
        // A zero-filled tail (allocated, never written) is torn, not corrupt.
        let mut zeroed = fs::read(&path).unwrap();
        zeroed[HEADER_BYTES + 3] ^= 1;
        zeroed.extend_from_slice(&[0; 4096]);
        fs::write(&path, &zeroed).unwrap();
        assert_eq!(read_all(&dir, |_, _, _| {}).unwrap(), samples());
        fs::remove_dir_all(&dir).unwrap();
    }
}
