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
//! channel of another version, a brotli stream that is cut short or
//! damaged, or content that is not a run of RLP strings is refused.

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
    if version != CHANNEL_VERSION_BROTLI {
        return Err(ChannelError::Version(version));
    }
    brotli_content(stream)
}

/// A brotli stream's content, at most `CHANNEL_RLP_BYTES_MAX` bytes.
fn brotli_content(stream: &[u8]) -> Result<Vec<u8>, ChannelError> {
    let reader = brotli::Decompressor::new(stream, BROTLI_BUFFER_BYTES);
    let mut content = Vec::new();
    let limit = u64::try_from(CHANNEL_RLP_BYTES_MAX).expect("fits") + 1;
    reader.take(limit).read_to_end(&mut content).map_err(|e| ChannelError::Brotli(e.to_string()))?;
    if content.len() > CHANNEL_RLP_BYTES_MAX {
        return Err(ChannelError::TooLarge);
    }
    Ok(content)
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

    #[test]
    fn a_bad_channel_is_refused() {
        let channel = compress(&content_of([&[1u8, 2, 3][..], &[4u8][..]]));
        assert_eq!(decompress(&[]), Err(ChannelError::Empty));
        assert_eq!(decompress(&[[0x78].as_slice(), &channel[1..]].concat()), Err(ChannelError::Version(0x78)));
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
