//! Frames read back from L1 into channels, by Holocene's rules (specs:
//! holocene/derivation.md, "Frame Queue" and "Channel Assembler"): one
//! channel is staged at a time; its frames must come in order with nothing
//! of another channel in between; a new channel's first frame replaces an
//! unfinished one; a channel not finished within the channel timeout after
//! the L1 block of its first frame is dropped, as is one past the size
//! bound. What a verifier assembles from the batcher's transactions, so
//! tephra reads its own batches back as a verifier will.
//!
//! ```text
//!  (L1 block, frame) ─> add ─> staging channel ──is_last──> Some(channel bytes)
//!                             └ out of order, another channel, timed out: dropped
//! ```

use crate::{ChannelError, ChannelId, FRAME_OVERHEAD_BYTES, Frame, RawSpanBatch, SPAN_BATCH_TYPE, SpanBatchError};

/// The largest channel a verifier assembles (Holocene: frame data plus
/// `FRAME_BOOKKEEPING_BYTES` per frame; Fjord's `MAX_RLP_BYTES_PER_CHANNEL`).
pub const CHANNEL_BYTES_MAX: usize = 100_000_000;

/// What a verifier counts per frame besides its data (the spec's
/// `frameOverhead`).
pub const FRAME_BOOKKEEPING_BYTES: usize = 200;

/// The channel timeout since Granite, in L1 blocks.
pub const CHANNEL_TIMEOUT_GRANITE_L1_BLOCKS: u64 = 50;

const _: () = assert!(FRAME_BOOKKEEPING_BYTES > FRAME_OVERHEAD_BYTES);

#[derive(Debug)]
struct Staging {
    id: ChannelId,
    opened_l1: u64,
    next_frame: u16,
    size: usize,
    data: Vec<u8>,
}

/// The channel being assembled; see the module comment.
#[derive(Debug)]
pub struct ChannelAssembler {
    timeout_l1_blocks: u64,
    staging: Option<Staging>,
}

impl ChannelAssembler {
    pub fn new(timeout_l1_blocks: u64) -> Self {
        Self { timeout_l1_blocks, staging: None }
    }

    /// Forgets the staged channel (the L1 blocks it came from were reorged
    /// out, or reading starts again).
    pub fn reset(&mut self) {
        self.staging = None;
    }

    /// Takes `frame`, read from L1 block `l1_number`: the channel's bytes if
    /// it completes one.
    pub fn add(&mut self, l1_number: u64, frame: &Frame) -> Option<Vec<u8>> {
        if self.staging.as_ref().is_some_and(|s| l1_number > s.opened_l1 + self.timeout_l1_blocks) {
            self.staging = None;
        }
        if frame.number == 0 {
            self.staging =
                Some(Staging { id: frame.channel_id, opened_l1: l1_number, next_frame: 0, size: 0, data: Vec::new() });
        }
        let staging = self.staging.as_mut()?;
        if staging.id != frame.channel_id || staging.next_frame != frame.number {
            // Another channel's later frame, or one out of order: dropped,
            // and the staged channel stays.
            return None;
        }
        staging.size += frame.data.len() + FRAME_BOOKKEEPING_BYTES;
        if staging.size > CHANNEL_BYTES_MAX {
            self.staging = None;
            return None;
        }
        staging.data.extend_from_slice(&frame.data);
        staging.next_frame = staging.next_frame.saturating_add(1);
        if frame.is_last {
            return self.staging.take().map(|s| s.data);
        }
        None
    }
}

/// Why an assembled channel's batches cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadBackError {
    #[error("channel: {0}")]
    Channel(#[from] ChannelError),
    #[error("batch {index} is of type {batch_type}, not a span batch")]
    NotASpanBatch { index: usize, batch_type: u8 },
    #[error("batch {index}: {error}")]
    SpanBatch { index: usize, error: SpanBatchError },
}

/// The span batches of an assembled channel, in order: as far as they are
/// read, and the error that stopped reading (a verifier drops the rest of
/// the channel there).
pub fn span_batches_of(channel: &[u8]) -> (Vec<RawSpanBatch>, Option<ReadBackError>) {
    let batches = match crate::decompress(channel).and_then(|content| crate::batches_of(&content)) {
        Ok(batches) => batches,
        Err(error) => return (Vec::new(), Some(error.into())),
    };
    let mut spans = Vec::with_capacity(batches.len());
    for (index, batch) in batches.iter().enumerate() {
        match batch.split_first() {
            Some((&SPAN_BATCH_TYPE, body)) => match RawSpanBatch::decode(body) {
                Ok(span) => spans.push(span),
                Err(error) => return (spans, Some(ReadBackError::SpanBatch { index, error })),
            },
            other => {
                let batch_type = other.map_or(0, |(t, _)| *t);
                return (spans, Some(ReadBackError::NotASpanBatch { index, batch_type }));
            }
        }
    }
    (spans, None)
}

#[cfg(test)]
mod tests {
    use alloy_primitives::Bytes;

    use super::*;

    fn frame(id: u8, number: u16, data: &'static [u8], is_last: bool) -> Frame {
        Frame { channel_id: [id; 16], number, data: Bytes::from_static(data), is_last }
    }

    #[test]
    fn frames_in_order_make_a_channel() {
        let mut assembler = ChannelAssembler::new(50);
        assert_eq!(assembler.add(10, &frame(1, 0, b"ab", false)), None);
        assert_eq!(assembler.add(11, &frame(1, 1, b"cd", false)), None);
        assert_eq!(assembler.add(11, &frame(1, 2, b"e", true)), Some(b"abcde".to_vec()));
        // Nothing follows a last frame.
        assert_eq!(assembler.add(12, &frame(1, 3, b"f", true)), None);
    }

    #[test]
    fn holocene_drops_what_is_out_of_order_interleaved_replaced_or_late() {
        let mut assembler = ChannelAssembler::new(50);
        assembler.add(10, &frame(1, 0, b"a", false));
        // Out of order, and another channel's later frame: dropped, the staged channel stays.
        assert_eq!(assembler.add(10, &frame(1, 2, b"x", true)), None);
        assert_eq!(assembler.add(10, &frame(2, 1, b"y", true)), None);
        assert_eq!(assembler.add(10, &frame(1, 1, b"b", true)), Some(b"ab".to_vec()));
        // A first frame replaces an unfinished channel.
        assembler.add(20, &frame(3, 0, b"old", false));
        assembler.add(21, &frame(4, 0, b"new", false));
        assert_eq!(assembler.add(21, &frame(3, 1, b"!", true)), None);
        assert_eq!(assembler.add(22, &frame(4, 1, b"!", true)), Some(b"new!".to_vec()));
        // Past the timeout the staged channel is gone.
        assembler.add(30, &frame(5, 0, b"slow", false));
        assert_eq!(assembler.add(81, &frame(5, 1, b"!", true)), None);
        assembler.add(90, &frame(6, 0, b"in", false));
        assert_eq!(assembler.add(140, &frame(6, 1, b"time", true)), Some(b"intime".to_vec()));
    }
}
