//! The batch log: what was preconfirmed and sealed, durable before anyone is
//! told.
//!
//! Append-only segments in `<data_dir>/log/`, named by their index. Every
//! record is `len u32 | crc32c u32 | payload`, little-endian, the checksum over
//! the payload. Records are written as they come and made durable together by
//! one `fdatasync` per group (`commit`): a mini-block's transactions, a seal.
//! On open, a record cut short or failing its checksum at the very end of the
//! last segment is a torn tail: it is truncated with a warning. Damage anywhere
//! else is refused.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use alloy_primitives::{Address, B256, Bytes, Log, LogData};

/// The largest record accepted: a mini-block of 256 transactions of 128 KiB
/// fits with room to spare.
pub const RECORD_SIZE_MAX_BYTES: usize = 64 << 20;
const HEADER_BYTES: usize = 8;
const SEGMENT_SUFFIX: &str = "seg";

/// A block's parameters, as chosen when it opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenRecord {
    pub number: u64,
    pub parent_hash: B256,
    pub timestamp: u64,
    pub beneficiary: Address,
    pub prevrandao: B256,
    pub extra_data: Bytes,
    pub gas_limit: u64,
    pub base_fee_per_gas: u64,
}

/// One transaction's receipt as the log keeps it (the bloom is derived).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptRecord {
    pub success: bool,
    pub cumulative_gas_used: u64,
    pub logs: Vec<Log>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A block opened.
    Open(OpenRecord),
    /// A mini-block: the transactions included, in order, with their senders.
    Batch { number: u64, txs: Vec<(Address, Bytes)> },
    /// The block sealed: its RLP header and its receipts, in order.
    Sealed { number: u64, header_rlp: Bytes, receipts: Vec<ReceiptRecord> },
    /// The block's signature by the block key.
    Signed { number: u64, hash: B256, signature: [u8; 65] },
    /// A leader of a high-availability pair took over: the records after
    /// this one are its, and the block open now or next carries its epoch.
    Epoch { epoch: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("batch log I/O: {0}")]
    Io(#[from] io::Error),
    #[error("batch log {segment}: damaged record at byte {offset} before the tail: {reason}")]
    Corrupt { segment: PathBuf, offset: u64, reason: String },
}

// ---- encoding ----

struct Enc(Vec<u8>);

impl Enc {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u32(u32::try_from(v.len()).expect("records are bounded far below 4 GiB"));
        self.0.extend_from_slice(v);
    }
    fn fixed(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
}

/// Bounds-checked reads: every length is checked against what is left.
struct Dec<'a>(&'a [u8]);

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!("needs {n} more bytes, {} left", self.0.len()));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn b256(&mut self) -> Result<B256, String> {
        Ok(B256::from_slice(self.take(32)?))
    }
    fn address(&mut self) -> Result<Address, String> {
        Ok(Address::from_slice(self.take(20)?))
    }
    fn bytes(&mut self) -> Result<Bytes, String> {
        let len = self.u32()? as usize;
        Ok(Bytes::copy_from_slice(self.take(len)?))
    }
    /// A count of items each at least `item_min_bytes` long, checked against what is left.
    fn count(&mut self, item_min_bytes: usize) -> Result<usize, String> {
        let n = self.u32()? as usize;
        if n.saturating_mul(item_min_bytes) > self.0.len() {
            return Err(format!("count {n} exceeds the record"));
        }
        Ok(n)
    }
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc(Vec::with_capacity(256));
        match self {
            Record::Open(o) => {
                e.u8(1);
                e.u64(o.number);
                e.fixed(o.parent_hash.as_slice());
                e.u64(o.timestamp);
                e.fixed(o.beneficiary.as_slice());
                e.fixed(o.prevrandao.as_slice());
                e.bytes(&o.extra_data);
                e.u64(o.gas_limit);
                e.u64(o.base_fee_per_gas);
            }
            Record::Batch { number, txs } => {
                e.u8(2);
                e.u64(*number);
                e.u32(u32::try_from(txs.len()).expect("bounded by the mini-block size"));
                for (sender, raw) in txs {
                    e.fixed(sender.as_slice());
                    e.bytes(raw);
                }
            }
            Record::Sealed { number, header_rlp, receipts } => {
                e.u8(3);
                e.u64(*number);
                e.bytes(header_rlp);
                e.u32(u32::try_from(receipts.len()).expect("bounded by the block gas limit"));
                for r in receipts {
                    e.u8(u8::from(r.success));
                    e.u64(r.cumulative_gas_used);
                    e.u32(u32::try_from(r.logs.len()).expect("bounded by gas"));
                    for log in &r.logs {
                        e.fixed(log.address.as_slice());
                        e.u8(u8::try_from(log.topics().len()).expect("at most 4 topics"));
                        for topic in log.topics() {
                            e.fixed(topic.as_slice());
                        }
                        e.bytes(&log.data.data);
                    }
                }
            }
            Record::Signed { number, hash, signature } => {
                e.u8(4);
                e.u64(*number);
                e.fixed(hash.as_slice());
                e.fixed(signature);
            }
            Record::Epoch { epoch } => {
                e.u8(5);
                e.u64(*epoch);
            }
        }
        e.0
    }

    /// The record as a segment holds it: length, crc32c of the payload, payload.
    pub fn frame(&self) -> Vec<u8> {
        let payload = self.encode();
        debug_assert!(payload.len() <= RECORD_SIZE_MAX_BYTES);
        let mut frame = Vec::with_capacity(HEADER_BYTES + payload.len());
        frame.extend_from_slice(&u32::try_from(payload.len()).expect("bounded").to_le_bytes());
        frame.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        frame.extend_from_slice(&payload);
        frame
    }

    pub fn decode(payload: &[u8]) -> Result<Self, String> {
        let mut d = Dec(payload);
        let record = match d.u8()? {
            1 => Record::Open(OpenRecord {
                number: d.u64()?,
                parent_hash: d.b256()?,
                timestamp: d.u64()?,
                beneficiary: d.address()?,
                prevrandao: d.b256()?,
                extra_data: d.bytes()?,
                gas_limit: d.u64()?,
                base_fee_per_gas: d.u64()?,
            }),
            2 => {
                let number = d.u64()?;
                let n = d.count(24)?;
                let mut txs = Vec::with_capacity(n);
                for _ in 0..n {
                    txs.push((d.address()?, d.bytes()?));
                }
                Record::Batch { number, txs }
            }
            3 => {
                let number = d.u64()?;
                let header_rlp = d.bytes()?;
                let n = d.count(13)?;
                let mut receipts = Vec::with_capacity(n);
                for _ in 0..n {
                    let success = d.u8()? != 0;
                    let cumulative_gas_used = d.u64()?;
                    let log_count = d.count(25)?;
                    let mut logs = Vec::with_capacity(log_count);
                    for _ in 0..log_count {
                        let address = d.address()?;
                        let topic_count = d.u8()?;
                        if topic_count > 4 {
                            return Err(format!("{topic_count} topics"));
                        }
                        let topics = (0..topic_count).map(|_| d.b256()).collect::<Result<Vec<_>, _>>()?;
                        let data = d.bytes()?;
                        logs.push(Log { address, data: LogData::new_unchecked(topics, data) });
                    }
                    receipts.push(ReceiptRecord { success, cumulative_gas_used, logs });
                }
                Record::Sealed { number, header_rlp, receipts }
            }
            4 => Record::Signed {
                number: d.u64()?,
                hash: d.b256()?,
                signature: d.take(65)?.try_into().expect("65 bytes"),
            },
            5 => Record::Epoch { epoch: d.u64()? },
            tag => return Err(format!("unknown record tag {tag}")),
        };
        if !d.0.is_empty() {
            return Err(format!("{} trailing bytes", d.0.len()));
        }
        Ok(record)
    }
}

// ---- segments ----

fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{index:012}.{SEGMENT_SUFFIX}"))
}

fn segment_indices(dir: &Path) -> io::Result<Vec<u64>> {
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

fn sync_dir(dir: &Path) -> io::Result<()> {
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
    pub reason: String,
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
        let reason = match parse_frame(&bytes[offset..]) {
            Ok(payload) => match Record::decode(payload) {
                Ok(record) => {
                    records.push(record);
                    offset += HEADER_BYTES + payload.len();
                    continue;
                }
                Err(reason) => reason,
            },
            Err(reason) => reason,
        };
        let torn = !(offset + 1..bytes.len())
            .any(|at| parse_frame(&bytes[at..]).is_ok_and(|payload| Record::decode(payload).is_ok()));
        return SegmentScan { records, damage: Some(Damage { offset, reason, torn }) };
    }
    SegmentScan { records, damage: None }
}

/// Reads every record of the log in `dir`, in order. A torn tail on the last
/// segment is truncated (and reported through `on_torn`); damage elsewhere is
/// an error.
pub fn read_all(dir: &Path, mut on_torn: impl FnMut(&Path, u64, &str)) -> Result<Vec<Record>, LogError> {
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

/// The payload of the frame at the start of `bytes`, or why not.
fn parse_frame(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() < HEADER_BYTES {
        return Err(format!("a header cut short ({} bytes)", bytes.len()));
    }
    let len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if len > RECORD_SIZE_MAX_BYTES {
        return Err(format!("a length of {len} bytes, above the record limit"));
    }
    let Some(payload) = bytes.get(HEADER_BYTES..HEADER_BYTES + len) else {
        return Err(format!("a length of {len} bytes with {} left", bytes.len() - HEADER_BYTES));
    };
    let computed = crc32c::crc32c(payload);
    if computed != crc {
        return Err(format!("checksum {computed:#010x}, recorded {crc:#010x}"));
    }
    Ok(payload)
}

/// Splits `bytes` (log frames end to end, as replication carries them) into
/// each record's frame and the record; any damage refuses the whole message.
pub fn split_frames(bytes: &[u8]) -> Result<Vec<(&[u8], Record)>, String> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let payload = parse_frame(&bytes[offset..])?;
        let end = offset + HEADER_BYTES + payload.len();
        out.push((&bytes[offset..end], Record::decode(payload)?));
        offset = end;
    }
    Ok(out)
}

/// The epochs of a log's records: epoch 0 from the first, then one entry
/// per Epoch record, at its index.
pub fn epoch_table(records: &[Record]) -> Vec<tephra_ha::EpochStart> {
    let mut table = vec![tephra_ha::EpochStart { epoch: 0, start: 0 }];
    for (index, record) in records.iter().enumerate() {
        if let Record::Epoch { epoch } = record {
            table.push(tephra_ha::EpochStart { epoch: *epoch, start: index as u64 });
        }
    }
    table
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
            offset += HEADER_BYTES + parse_frame(&bytes[offset..]).map_err(io::Error::other)?.len();
        }
        let file = OpenOptions::new().write(true).open(&path)?;
        file.set_len(offset as u64)?;
        file.sync_all()?;
    }
    sync_dir(dir)?;
    Ok(removed)
}

/// The log on disk as a replication source: records older than the
/// leader's in-memory window. Segments other than the last never change, so
/// their record counts are kept once counted.
#[derive(Debug)]
pub struct DiskLog {
    dir: PathBuf,
    counts: std::sync::Mutex<std::collections::BTreeMap<u64, u64>>,
}

impl DiskLog {
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_path_buf(), counts: Default::default() }
    }
}

impl tephra_ha::LogSource for DiskLog {
    fn read_frames(&self, first: u64, end: u64, bytes_max: usize, out: &mut Vec<u8>) -> io::Result<u64> {
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

/// The writing end. One writer per log.
#[derive(Debug)]
pub struct LogWriter {
    dir: PathBuf,
    file: File,
    index: u64,
    segment_bytes: u64,
    segment_size_max_bytes: u64,
    uncommitted: bool,
    /// Records in the log, appended or durable.
    records: u64,
    /// A leader's replication: every frame appended, every commit.
    feed: Option<std::sync::Arc<tephra_ha::Feed>>,
}

impl LogWriter {
    /// Opens the log in `dir`, which holds `records` records, for appending
    /// (after `read_all` has checked it).
    pub fn open(dir: &Path, segment_size_max_bytes: u64, records: u64) -> Result<Self, LogError> {
        fs::create_dir_all(dir)?;
        let index = segment_indices(dir)?.last().copied().unwrap_or(1);
        let path = segment_path(dir, index);
        let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
        let segment_bytes = file.seek(SeekFrom::End(0))?;
        sync_dir(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            file,
            index,
            segment_bytes,
            segment_size_max_bytes,
            uncommitted: false,
            records,
            feed: None,
        })
    }

    /// From now on every frame and commit also goes to `feed`.
    pub fn set_feed(&mut self, feed: std::sync::Arc<tephra_ha::Feed>) {
        self.feed = Some(feed);
    }

    /// Records in the log, appended or durable.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Appends a record; durable only after the next `commit`.
    pub fn append(&mut self, record: &Record) -> Result<(), LogError> {
        let frame = record.frame();
        self.write_frame(&frame)?;
        if let Some(feed) = &self.feed {
            feed.append(frame);
        }
        Ok(())
    }

    /// Appends a frame as received from the leader (checked by `split_frames`).
    pub fn append_frame(&mut self, frame: &[u8]) -> Result<(), LogError> {
        self.write_frame(frame)
    }

    fn write_frame(&mut self, frame: &[u8]) -> Result<(), LogError> {
        if self.segment_bytes > 0 && self.segment_bytes + frame.len() as u64 > self.segment_size_max_bytes {
            self.roll()?;
        }
        self.file.write_all(frame)?;
        self.segment_bytes += frame.len() as u64;
        self.uncommitted = true;
        self.records += 1;
        Ok(())
    }

    /// Makes every appended record durable; returns how long the sync took.
    pub fn commit(&mut self) -> Result<Duration, LogError> {
        if !self.uncommitted {
            return Ok(Duration::ZERO);
        }
        let start = Instant::now();
        self.file.sync_data()?;
        self.uncommitted = false;
        if let Some(feed) = &self.feed {
            feed.commit();
        }
        Ok(start.elapsed())
    }

    /// Bytes an unprivileged writer may still use on the log's file system.
    pub fn free_bytes(&self) -> io::Result<u64> {
        let stat = rustix::fs::statvfs(&self.dir)?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    fn roll(&mut self) -> Result<(), LogError> {
        self.file.sync_data()?;
        self.index += 1;
        self.file = OpenOptions::new().create_new(true).append(true).open(segment_path(&self.dir, self.index))?;
        self.segment_bytes = 0;
        sync_dir(&self.dir)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        tephra_testkit::fresh_dir(&format!("log-{name}"))
    }

    fn samples() -> Vec<Record> {
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
    fn write_samples(dir: &Path) -> (PathBuf, Vec<u8>) {
        let mut writer = LogWriter::open(dir, 1 << 20, 0).unwrap();
        for record in samples() {
            writer.append(&record).unwrap();
        }
        writer.commit().unwrap();
        let path = segment_path(dir, 1);
        let bytes = fs::read(&path).unwrap();
        (path, bytes)
    }

    #[test]
    fn records_round_trip_across_segments() {
        let dir = temp_dir("roundtrip");
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
        let dir = temp_dir("torn");
        let (path, full) = write_samples(&dir);
        // Every cut inside the last record is a torn tail: the first three survive.
        let last_start = full.len() - (HEADER_BYTES + samples()[3].encode().len());
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
        let dir = temp_dir("exhaustive");
        let (path, full) = write_samples(&dir);
        let ends: Vec<usize> = samples()
            .iter()
            .scan(0, |end, record| {
                *end += HEADER_BYTES + record.encode().len();
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
        let dir = temp_dir("corrupt");
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
        let dir = temp_dir("middle");
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

    #[test]
    fn decoding_arbitrary_bytes_never_panics() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for record in samples() {
            let encoded = record.encode();
            for len in 0..encoded.len() {
                let _ = Record::decode(&encoded[..len]);
            }
            for _ in 0..2_000 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let mut mutated = encoded.clone();
                let i = usize::try_from(seed % mutated.len() as u64).expect("below the length");
                mutated[i] = seed.to_le_bytes()[4];
                let _ = Record::decode(&mutated);
            }
        }
    }

    #[test]
    fn truncation_keeps_a_prefix_and_the_disk_source_serves_any_range() {
        use tephra_ha::LogSource;
        let dir = temp_dir("truncate");
        // Small segments: records spread over several files.
        let mut writer = LogWriter::open(&dir, 4096, 0).unwrap();
        let record = |i: u64| match i % 50 {
            0 if i > 0 => Record::Epoch { epoch: i },
            _ => Record::Batch { number: i, txs: vec![(Address::ZERO, Bytes::from(vec![i.to_le_bytes()[0]; 300]))] },
        };
        let expected: Vec<Record> = (0..200).map(record).collect();
        for r in &expected {
            writer.append(r).unwrap();
        }
        writer.commit().unwrap();
        assert_eq!(writer.records(), 200);
        drop(writer);
        let table = epoch_table(&expected);
        assert_eq!(
            table.iter().map(|e| (e.epoch, e.start)).collect::<Vec<_>>(),
            [(0, 0), (50, 50), (100, 100), (150, 150)]
        );
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
