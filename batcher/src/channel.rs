//! Channels: the batches of a run of blocks as one compressed stream,
//! which frames then carry (specs: derivation.md "Channel Format", Fjord's
//! brotli channels).
//!
//! ```text
//!  content = rlp_string(batch) ‖ rlp_string(batch) ‖ ...      batch = type ‖ body
//!  channel = 0x01 ‖ brotli(content)                          (quality 10, window 2^22, as op-batcher's "brotli")
//! ```
//!
//! Reading back is bounded: at most `CHANNEL_RLP_BYTES_MAX` bytes of
//! content are decompressed (as a verifier reads no further), and a
//! channel of another version, a stream that is cut short or damaged, or
//! content that is not a run of RLP strings is refused. A channel before
//! Fjord (a zlib stream, no version byte: its first byte's low nibble is 8
//! or 15, as verifiers tell it) is read too, as verifiers read it: up to
//! where its stream ends or breaks (op-batcher's zlib channels on L1 end
//! unterminated); tephra writes brotli.

use std::io::{Read, Write};

use alloy_primitives::Bytes;
use alloy_rlp::Header;

/// The version byte of a brotli channel (Fjord).
pub const CHANNEL_VERSION_BROTLI: u8 = 1;

/// The most content a verifier reads from one channel (Fjord's
/// `MAX_RLP_BYTES_PER_CHANNEL`).
pub const CHANNEL_RLP_BYTES_MAX: usize = 100_000_000;

/// op-batcher's `brotli` compression: level 10 and brotli's default
/// window of 2^22 bytes.
pub const BROTLI_QUALITY_OP_BATCHER: u32 = 10;
/// Brotli's quality levels: 0 (fastest) to 11 (smallest).
pub const BROTLI_QUALITY_MAX: u32 = 11;
const BROTLI_WINDOW_LOG: u32 = 22;
/// The buffer brotli streams through.
const BROTLI_BUFFER_BYTES: usize = 4096;

/// Why bytes are not a channel's batches.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("an empty channel")]
    Empty,
    #[error("channel version {0:#04x}, not brotli's 0x01")]
    Version(u8),
    #[error("the brotli stream: {0}")]
    Brotli(String),
    #[error("the zlib stream: {0}")]
    Zlib(String),
    #[error("content over {CHANNEL_RLP_BYTES_MAX} bytes")]
    TooLarge,
    #[error("batch {index}: {reason}")]
    Batch { index: usize, reason: String },
}

/// A channel's content: each batch as an RLP byte string, in order.
pub fn content_of<'a>(batches: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for batch in batches {
        alloy_rlp::Encodable::encode(batch, &mut out);
    }
    out
}

/// `content` compressed into a channel at op-batcher's level.
pub fn compress(content: &[u8]) -> Vec<u8> {
    let mut writer = compressor(BROTLI_QUALITY_OP_BATCHER);
    writer.write_all(content).expect("writing to memory");
    writer.into_inner()
}

/// A channel's compressor at brotli `quality` (at most
/// `BROTLI_QUALITY_MAX`): the version byte is already written, and
/// `into_inner` ends the stream.
pub(crate) fn compressor(quality: u32) -> brotli::CompressorWriter<Vec<u8>> {
    let out = vec![CHANNEL_VERSION_BROTLI];
    brotli::CompressorWriter::new(out, BROTLI_BUFFER_BYTES, quality.min(BROTLI_QUALITY_MAX), BROTLI_WINDOW_LOG)
}

/// A channel's content; see the module comment.
pub fn decompress(channel: &[u8]) -> Result<Vec<u8>, ChannelError> {
    let (&version, stream) = channel.split_first().ok_or(ChannelError::Empty)?;
    match version {
        CHANNEL_VERSION_BROTLI => {
            bounded(brotli::Decompressor::new(stream, BROTLI_BUFFER_BYTES)).map_err(ChannelError::Brotli)?
        }
        // zlib's header: compression method 8 (deflate), or 15 (reserved)
        // which verifiers take as zlib too.
        zlib if zlib & 0x0f == 8 || zlib & 0x0f == 15 => {
            let mut content = Vec::new();
            let limit = u64::try_from(CHANNEL_RLP_BYTES_MAX).expect("fits") + 1;
            let read = flate2::read::ZlibDecoder::new(channel).take(limit).read_to_end(&mut content);
            match read {
                Err(error) if content.is_empty() => Err(ChannelError::Zlib(error.to_string())),
                _ if content.len() > CHANNEL_RLP_BYTES_MAX => Err(ChannelError::TooLarge),
                _ => Ok(content),
            }
        }
        other => Err(ChannelError::Version(other)),
    }
}

/// What `reader` decompresses, at most `CHANNEL_RLP_BYTES_MAX` bytes: the
/// stream's own error outside, the content or `TooLarge` inside.
fn bounded(reader: impl Read) -> Result<Result<Vec<u8>, ChannelError>, String> {
    let mut content = Vec::new();
    let limit = u64::try_from(CHANNEL_RLP_BYTES_MAX).expect("fits") + 1;
    reader.take(limit).read_to_end(&mut content).map_err(|e| e.to_string())?;
    if content.len() > CHANNEL_RLP_BYTES_MAX {
        return Ok(Err(ChannelError::TooLarge));
    }
    Ok(Ok(content))
}

/// The batches (type ‖ body) of a channel's content, in order.
pub fn batches_of(content: &[u8]) -> Result<Vec<Bytes>, ChannelError> {
    let mut rest = content;
    let mut batches = Vec::new();
    while !rest.is_empty() {
        let index = batches.len();
        let bad = |reason: String| ChannelError::Batch { index, reason };
        let header = Header::decode(&mut rest).map_err(|e| bad(e.to_string()))?;
        if header.list {
            return Err(bad("an RLP list, not a byte string".into()));
        }
        let body = rest.get(..header.payload_length).ok_or_else(|| bad("cut short".into()))?;
        batches.push(Bytes::copy_from_slice(body));
        rest = &rest[header.payload_length..];
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use alloy_primitives::hex;
    use proptest::prelude::*;

    use super::*;

    fn vector(text: &str) -> Vec<u8> {
        hex::decode(text.trim()).unwrap()
    }

    /// An OP Stack chain's brotli channel (testdata/README.md): it
    /// decompresses to its one batch, and compressing that batch as
    /// op-batcher does gives the same bytes.
    #[test]
    fn a_real_channel_decompresses_and_compresses_back() {
        let stream = vector(include_str!("../testdata/brotli_batch.compressed.hex"));
        let content = vector(include_str!("../testdata/brotli_batch.decompressed.hex"));
        let channel = [&[CHANNEL_VERSION_BROTLI][..], &stream].concat();
        assert_eq!(decompress(&channel).unwrap(), content);
        let batches = batches_of(&content).unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0][0], 0, "a singular batch");
        assert_eq!(content_of(batches.iter().map(|b| &b[..])), content);
        assert_eq!(compress(&content), channel, "op-batcher's brotli-10 bytes");
        // kona's small vector: a stream of 10 bytes stored uncompressed.
        let small = [&[CHANNEL_VERSION_BROTLI][..], &vector("8b048075ed184249e9bc19675e03")].concat();
        assert_eq!(decompress(&small).unwrap(), vector("75ed184249e9bc19675e"));
    }

    /// A real batcher transaction of an OP Stack chain before Fjord
    /// (testdata/README.md): one frame carrying a whole zlib channel of
    /// singular batches.
    #[test]
    fn a_real_zlib_channel_reads() {
        use alloy_consensus::Transaction;
        use alloy_eips::Decodable2718;
        let raw = include_bytes!("../testdata/raw_batcher_tx.bin");
        let tx = alloy_consensus::TxEnvelope::decode_2718(&mut raw.as_slice()).unwrap();
        assert_eq!(tx.to(), Some(alloy_primitives::address!("ff00000000000000000000000000000000000010")));
        let frames = crate::parse_frames(tx.input()).unwrap();
        assert_eq!(frames.len(), 1);
        assert!(frames[0].number == 0 && frames[0].is_last, "a whole channel in one frame");
        assert_eq!(frames[0].data[..2], [0x78, 0xda], "zlib at its best compression, as op-batcher wrote it");
        // The stream ends unterminated, as op-batcher's zlib channels did;
        // read up to there, it holds one whole span batch, which decodes
        // and encodes back byte for byte.
        let content = decompress(&frames[0].data).unwrap();
        assert_eq!(content.len(), 240_308);
        let batches = batches_of(&content).unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0][0], crate::SPAN_BATCH_TYPE);
        let span = crate::RawSpanBatch::decode(&batches[0][1..]).unwrap();
        assert_eq!(span.batch_bytes(), batches[0].to_vec());
        assert!(matches!(decompress(&[0x78, 0xda, 0xff]), Err(ChannelError::Zlib(_))));
    }

    #[test]
    fn a_bad_channel_is_refused() {
        let channel = compress(&content_of([&[1u8, 2, 3][..], &[4u8][..]]));
        assert_eq!(decompress(&[]), Err(ChannelError::Empty));
        assert_eq!(decompress(&[[0x02].as_slice(), &channel[1..]].concat()), Err(ChannelError::Version(0x02)));
        assert!(matches!(decompress(&channel[..channel.len() - 1]), Err(ChannelError::Brotli(_))));
        assert!(matches!(batches_of(&[0xc1, 0x80]), Err(ChannelError::Batch { index: 0, .. })));
        assert!(matches!(batches_of(&[0x83, 1]), Err(ChannelError::Batch { index: 0, .. })));
        // Past the content limit: a stream of zeros that compresses to little.
        let zeros = compress(&vec![0u8; CHANNEL_RLP_BYTES_MAX + 1]);
        assert!(zeros.len() < 100_000);
        assert_eq!(decompress(&zeros), Err(ChannelError::TooLarge));
    }

    proptest! {
        #[test]
        fn batches_round_trip_through_a_channel(batches in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8)) {
            let channel = compress(&content_of(batches.iter().map(Vec::as_slice)));
            let back = batches_of(&decompress(&channel).unwrap()).unwrap();
            prop_assert_eq!(back.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), batches);
        }

        #[test]
        fn reading_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decompress(&[[CHANNEL_VERSION_BROTLI].as_slice(), &bytes].concat()).map(|c| batches_of(&c));
            let _ = batches_of(&bytes);
        }
    }
}
