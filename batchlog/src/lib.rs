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
//!
//! | module | what |
//! |---|---|
//! | `record` | the records and their payload encoding |
//! | `frame` | a record's frame (length, checksum, payload), parsing one, splitting replicated frames |
//! | `rewind` | the chain a log holds once its rewinds (an OP Stack chain's L1 reorgs) are applied |
//! | `segment` | segment files: scanning, reading the whole log, truncating it |
//! | `writer` | `LogWriter`, the one writing end, and the `FrameSink` replication sees it through |
//! | `disk` | `DiskLog`: frames read back from disk for a standby behind the in-memory window |

use std::{io, path::PathBuf};

mod disk;
#[cfg(test)]
mod fixtures;
mod frame;
mod record;
mod rewind;
mod segment;
mod writer;

pub use disk::DiskLog;
pub use frame::{FRAME_BYTES_MAX, FrameError, split_frames};
pub use record::{
    DecodeError, HEADER_RLP_MAX_BYTES, L1OriginRecord, OpOpenRecord, OpenRecord, ReceiptRecord, Record,
    batch_record_bytes_max, sealed_record_bytes_max,
};
pub use rewind::{Chain, RewindError, chain_of};
pub use segment::{Damage, SegmentScan, read_all, scan_segment, truncate};
pub use writer::{FrameSink, LogWriter};

/// The largest record accepted. Every record the node writes fits: the
/// largest mini-block (`batch_record_bytes_max` of the node's
/// `MINI_BLOCK_TXS_MAX` transactions of `TX_SIZE_MAX_BYTES`) by a compile-time
/// assertion in the node's config, a sealed block (`sealed_record_bytes_max`
/// of the chain's gas limit) checked when the node starts. 256 MiB: a block
/// of the embedded dev chain's 10^9 gas, filled with logs, fits (about
/// 251 MB); a chain of more gas is refused at start. Records are read into
/// memory one segment at a time, so this bounds nothing the segment size
/// does not already.
pub const RECORD_SIZE_MAX_BYTES: usize = 256 << 20;

// A frame's header holds the length in a u32.
const _: () = assert!(RECORD_SIZE_MAX_BYTES <= u32::MAX as usize);

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("batch log I/O: {0}")]
    Io(#[from] io::Error),
    #[error("batch log {segment}: damaged record at byte {offset} before the tail: {reason}")]
    Corrupt { segment: PathBuf, offset: u64, reason: FrameError },
    #[error("a record of {bytes} bytes, above the limit of {max_bytes}")]
    RecordTooLarge { bytes: usize, max_bytes: usize },
    #[error("a log of {topics} topics: the EVM emits at most 4")]
    TooManyTopics { topics: usize },
}
