//! A channel being filled: each run of new sealed blocks becomes one span
//! batch, written into the channel's brotli stream as it comes, so that
//! every byte is compressed once and the channel's compressed size is
//! known exactly after each run (the stream is flushed). The caller closes
//! the channel (size, duration, the sequencing window: `tephra-node`'s
//! batcher decides) and cuts it into frames.
//!
//! ```text
//!  add_blocks(first, blocks) ─> RawSpanBatch ─> rlp string ─> brotli stream (flushed) ─> compressed_bytes()
//!  close(frame_size) ─> end of stream ─> frames 0..n (the last says so)
//! ```
//!
//! Invariants: the blocks of a channel are consecutive, from its first;
//! its content never exceeds `CHANNEL_RLP_BYTES_MAX`, which a verifier
//! would cut; a channel holds at least one block before it is closed.

use std::io::Write;

use alloy_rlp::Encodable;

use crate::{
    BatchBlock, CHANNEL_RLP_BYTES_MAX, ChannelId, Frame, FrameError, RawSpanBatch, SpanBatchError, channel::compressor,
    frames_of,
};

/// Why blocks cannot go into a channel, or it cannot be closed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChannelOutError {
    #[error("block {got} is not the channel's next block {expected}")]
    NotNext { expected: u64, got: u64 },
    #[error("no blocks to add")]
    NoBlocks,
    #[error("{bytes} more bytes of content would pass the channel's {CHANNEL_RLP_BYTES_MAX}")]
    ContentFull { bytes: usize },
    #[error("a channel without blocks")]
    Empty,
    #[error("span batch: {0}")]
    SpanBatch(#[from] SpanBatchError),
    #[error("frames: {0}")]
    Frames(#[from] FrameError),
}

/// An open channel; see the module comment.
pub struct ChannelOut {
    id: ChannelId,
    writer: brotli::CompressorWriter<Vec<u8>>,
    content_bytes: usize,
    first_block: u64,
    /// The number after the newest block added.
    next_block: u64,
    /// The oldest L1 origin among its blocks: the sequencing window of
    /// the channel starts there.
    oldest_origin: Option<u64>,
    genesis_l2_time: u64,
}

impl core::fmt::Debug for ChannelOut {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ChannelOut")
            .field("id", &alloy_primitives::hex::encode(self.id))
            .field("blocks", &(self.first_block..self.next_block))
            .field("content_bytes", &self.content_bytes)
            .field("compressed_bytes", &self.compressed_bytes())
            .finish()
    }
}

/// A closed channel: its blocks and its frames, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClosedChannel {
    pub id: ChannelId,
    pub first_block: u64,
    pub last_block: u64,
    pub oldest_origin: u64,
    pub content_bytes: usize,
    pub compressed_bytes: usize,
    pub frames: Vec<Frame>,
}

impl ChannelOut {
    /// An empty channel whose first block will be `first_block`, compressed
    /// at brotli `quality`.
    pub fn new(id: ChannelId, first_block: u64, genesis_l2_time: u64, quality: u32) -> Self {
        Self {
            id,
            writer: compressor(quality),
            content_bytes: 0,
            first_block,
            next_block: first_block,
            oldest_origin: None,
            genesis_l2_time,
        }
    }

    pub fn id(&self) -> ChannelId {
        self.id
    }

    /// The channel's first block.
    pub fn first_block(&self) -> u64 {
        self.first_block
    }

    /// The block the channel takes next.
    pub fn next_block(&self) -> u64 {
        self.next_block
    }

    pub fn is_empty(&self) -> bool {
        self.next_block == self.first_block
    }

    pub fn oldest_origin(&self) -> Option<u64> {
        self.oldest_origin
    }

    /// The channel's bytes so far (the version byte and the flushed stream).
    pub fn compressed_bytes(&self) -> usize {
        self.writer.get_ref().len()
    }

    /// The uncompressed content so far.
    pub fn content_bytes(&self) -> usize {
        self.content_bytes
    }

    /// Adds `blocks`, numbered from `first`, as one span batch.
    pub fn add_blocks(&mut self, first: u64, blocks: &[BatchBlock]) -> Result<(), ChannelOutError> {
        if first != self.next_block {
            return Err(ChannelOutError::NotNext { expected: self.next_block, got: first });
        }
        if blocks.is_empty() {
            return Err(ChannelOutError::NoBlocks);
        }
        let batch = RawSpanBatch::from_blocks(self.genesis_l2_time, blocks)?.batch_bytes();
        let mut string = Vec::with_capacity(batch.len() + 9);
        batch.as_slice().encode(&mut string);
        if self.content_bytes + string.len() > CHANNEL_RLP_BYTES_MAX {
            return Err(ChannelOutError::ContentFull { bytes: string.len() });
        }
        self.writer.write_all(&string).and_then(|()| self.writer.flush()).expect("compressing into memory");
        self.content_bytes += string.len();
        self.next_block += u64::try_from(blocks.len()).expect("a span batch's blocks fit u64");
        let oldest = blocks.iter().map(|b| b.origin_number).min().expect("not empty");
        self.oldest_origin = Some(self.oldest_origin.map_or(oldest, |o| o.min(oldest)));
        Ok(())
    }

    /// Ends the stream and cuts the channel into frames of at most
    /// `frame_size_max_bytes` each.
    pub fn close(self, frame_size_max_bytes: usize) -> Result<ClosedChannel, ChannelOutError> {
        let oldest_origin = self.oldest_origin.ok_or(ChannelOutError::Empty)?;
        let (id, first_block, last_block, content_bytes) =
            (self.id, self.first_block, self.next_block - 1, self.content_bytes);
        let channel = self.writer.into_inner();
        let frames = frames_of(id, &channel, frame_size_max_bytes)?;
        Ok(ClosedChannel {
            id,
            first_block,
            last_block,
            oldest_origin,
            content_bytes,
            compressed_bytes: channel.len(),
            frames,
        })
    }
}

#[cfg(test)]
mod tests {
    use alloy_primitives::B256;

    use super::*;
    use crate::{SPAN_BATCH_TYPE, batches_of, decompress, parse_frames, payload_of};

    fn blocks(first: u64, count: u64) -> Vec<BatchBlock> {
        (first..first + count)
            .map(|n| BatchBlock {
                timestamp: 1_000 + n * 2,
                parent_hash: B256::repeat_byte(u8::try_from(n % 251).unwrap()),
                origin_number: 10 + n / 6,
                origin_hash: B256::repeat_byte(0x77),
                sequence_number: n % 6,
                txs: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn runs_of_blocks_become_span_batches_of_one_channel_read_back_from_its_frames() {
        let channel = ChannelOut::new([7; 16], 5, 990, 10);
        assert!(matches!(channel.close(1_000), Err(ChannelOutError::Empty)));
        let mut channel = ChannelOut::new([7; 16], 5, 990, 10);
        channel.add_blocks(5, &blocks(5, 3)).unwrap();
        let after_first = channel.compressed_bytes();
        assert!(after_first > 1, "the flushed stream is counted");
        assert_eq!(channel.add_blocks(9, &blocks(9, 1)), Err(ChannelOutError::NotNext { expected: 8, got: 9 }));
        channel.add_blocks(8, &blocks(8, 4)).unwrap();
        assert!(channel.compressed_bytes() > after_first);
        assert_eq!((channel.next_block(), channel.oldest_origin()), (12, Some(10)));
        let closed = channel.close(60).unwrap();
        assert_eq!((closed.first_block, closed.last_block), (5, 11));
        assert!(closed.frames.len() > 1 && closed.frames.last().unwrap().is_last);
        // What a verifier does: frames from the payloads, the channel, its batches.
        let mut data = Vec::new();
        for frame in &closed.frames {
            let parsed = parse_frames(&payload_of([frame])).unwrap();
            data.extend_from_slice(&parsed[0].data);
        }
        assert_eq!(data.len(), closed.compressed_bytes);
        let batches = batches_of(&decompress(&data).unwrap()).unwrap();
        assert_eq!(batches.len(), 2);
        for (batch, (first, count)) in batches.iter().zip([(5, 3), (8, 4)]) {
            assert_eq!(batch[0], SPAN_BATCH_TYPE);
            let expected = RawSpanBatch::from_blocks(990, &blocks(first, count)).unwrap();
            assert_eq!(RawSpanBatch::decode(&batch[1..]).unwrap(), expected);
        }
    }

    #[test]
    fn content_past_the_channel_limit_is_refused_before_it_is_written() {
        let mut channel = ChannelOut::new([1; 16], 0, 0, 0);
        channel.content_bytes = CHANNEL_RLP_BYTES_MAX - 10;
        assert!(matches!(channel.add_blocks(0, &blocks(0, 1)), Err(ChannelOutError::ContentFull { .. })));
        assert!(channel.is_empty());
    }
}
