//! The writing end: frames appended to the newest segment, made durable by
//! `commit`, and only then told to replication.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    LogError,
    record::Record,
    segment::{segment_indices, segment_path, sync_dir},
};

/// What replication sees of the log (a leader's feed to its standbys): every
/// frame as it is appended, and every commit once what came before is
/// durable. Defined here so that the log knows nothing of replication.
pub trait FrameSink: Send + Sync + std::fmt::Debug {
    /// A record's frame, just appended (not yet durable).
    fn append(&self, frame: Vec<u8>);
    /// Every frame appended so far is durable.
    fn commit(&self);
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
    sink: Option<Arc<dyn FrameSink>>,
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
            sink: None,
        })
    }

    /// From now on every frame and commit also goes to `sink`.
    pub fn set_sink(&mut self, sink: Arc<dyn FrameSink>) {
        self.sink = Some(sink);
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records in the log, appended or durable.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Appends a record; durable only after the next `commit`. A record the
    /// log cannot hold (`Record::frame`) is refused before anything is
    /// written.
    pub fn append(&mut self, record: &Record) -> Result<(), LogError> {
        let frame = record.frame()?;
        self.write_frame(&frame)?;
        if let Some(sink) = &self.sink {
            sink.append(frame);
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
        if let Some(sink) = &self.sink {
            sink.commit();
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
    use std::sync::Mutex;

    use alloy_primitives::{Address, Bytes};

    use super::*;
    use crate::{
        RECORD_SIZE_MAX_BYTES,
        fixtures::{fresh_dir, samples, write_samples},
        read_all,
    };

    /// A sink that remembers what it was told, in order.
    #[derive(Debug, Default)]
    struct Recorded(Mutex<Vec<Told>>);

    #[derive(Debug, PartialEq, Eq)]
    enum Told {
        Frame(Vec<u8>),
        Commit,
    }

    impl FrameSink for Recorded {
        fn append(&self, frame: Vec<u8>) {
            self.0.lock().unwrap().push(Told::Frame(frame));
        }
        fn commit(&self) {
            self.0.lock().unwrap().push(Told::Commit);
        }
    }

    #[test]
    fn a_record_over_the_limit_is_refused_and_the_log_is_unchanged() {
        let dir = fresh_dir("too-large");
        let (path, before) = write_samples(&dir);
        let mut writer = LogWriter::open(&dir, 1 << 30, 4).unwrap();
        let sink = Arc::new(Recorded::default());
        writer.set_sink(sink.clone());
        let over = Record::Batch { number: 2, txs: vec![(Address::ZERO, Bytes::from(vec![0; RECORD_SIZE_MAX_BYTES]))] };
        assert!(matches!(
            writer.append(&over),
            Err(LogError::RecordTooLarge { bytes, max_bytes: RECORD_SIZE_MAX_BYTES }) if bytes > RECORD_SIZE_MAX_BYTES
        ));
        assert_eq!(writer.records(), 4, "not counted");
        assert_eq!(writer.commit().unwrap(), Duration::ZERO, "nothing to sync");
        assert_eq!(fs::read(&path).unwrap(), before, "nothing written");
        assert!(sink.0.lock().unwrap().is_empty(), "nothing told to replication");
        assert_eq!(read_all(&dir, |_, _, _| panic!("no tear")).unwrap(), samples());
        // The writer goes on.
        writer.append(&Record::Epoch { epoch: 1 }).unwrap();
        writer.commit().unwrap();
        let mut expected = samples();
        expected.push(Record::Epoch { epoch: 1 });
        assert_eq!(read_all(&dir, |_, _, _| panic!("no tear")).unwrap(), expected);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_sink_hears_each_frame_then_the_commit_after_the_sync() {
        let dir = fresh_dir("sink");
        let mut writer = LogWriter::open(&dir, 1 << 20, 0).unwrap();
        let sink = Arc::new(Recorded::default());
        writer.set_sink(sink.clone());
        for record in &samples()[..2] {
            writer.append(record).unwrap();
        }
        writer.commit().unwrap();
        writer.append_frame(&samples()[2].frame().unwrap()).unwrap();
        let told = std::mem::take(&mut *sink.0.lock().unwrap());
        let frames: Vec<Told> = samples()[..2].iter().map(|r| Told::Frame(r.frame().unwrap())).collect();
        assert_eq!(told[..2], frames[..], "each appended frame, as written");
        assert_eq!(told[2..], [Told::Commit], "then the commit; a replicated frame is not fed back");
        fs::remove_dir_all(&dir).unwrap();
    }
}
