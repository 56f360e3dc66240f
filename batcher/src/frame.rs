//! Frames: a channel's bytes cut into numbered pieces, each small enough
//! for one L1 transaction (calldata) or one blob, and the batcher
//! transaction's payload that carries them.
//!
//! A frame is `channel_id (16) ‖ frame_number u16 ‖ frame_data_length u32
//! ‖ frame_data ‖ is_last u8`, big-endian (specs: derivation.md, "Frame
//! Format"); a payload is `DERIVATION_VERSION ‖ frame ‖ frame ...`.
//! Parsing is all or nothing, as op-node's `ParseFrames`: an unknown
//! version, a frame cut short, an `is_last` other than 0 or 1, a length
//! over `FRAME_DATA_MAX_BYTES` or bytes after the last frame refuse the
//! whole payload.

use alloy_primitives::Bytes;

/// A channel's identifier: 16 random bytes, never reused.
pub type ChannelId = [u8; 16];

/// The version byte every batcher transaction's payload starts with.
pub const DERIVATION_VERSION: u8 = 0;

/// A frame's bytes besides its data: id, number, length, is_last.
pub const FRAME_OVERHEAD_BYTES: usize = 16 + 2 + 4 + 1;

/// The longest frame data a verifier reads (op-node's `MaxFrameLen`).
pub const FRAME_DATA_MAX_BYTES: usize = 1_000_000;

/// One frame of a channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub channel_id: ChannelId,
    pub number: u16,
    pub data: Bytes,
    pub is_last: bool,
}

/// Why bytes are not a payload of frames, or a channel cannot be framed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("an empty payload")]
    Empty,
    #[error("derivation version {0}, not 0")]
    Version(u8),
    #[error("a frame cut short at byte {offset}")]
    Truncated { offset: usize },
    #[error("frame data of {bytes} bytes, above the {FRAME_DATA_MAX_BYTES} a verifier reads")]
    TooLong { bytes: usize },
    #[error("is_last byte {0}, not 0 or 1")]
    IsLast(u8),
    #[error("a channel of {frames} frames or more: frame numbers are 16 bits")]
    TooManyFrames { frames: usize },
    #[error("a frame size of {0} bytes leaves no room for data")]
    FrameSize(usize),
}

impl Frame {
    /// The frame's bytes, appended to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.channel_id);
        out.extend_from_slice(&self.number.to_be_bytes());
        let length = u32::try_from(self.data.len()).expect("frame data is cut below 4 GiB");
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&self.data);
        out.push(u8::from(self.is_last));
    }

    pub fn encoded_len(&self) -> usize {
        FRAME_OVERHEAD_BYTES + self.data.len()
    }
}

/// `channel` (a compressed channel's bytes) cut into frames of at most
/// `frame_size_max_bytes` each (overhead included), numbered from 0; the
/// last one says so. An empty channel is one empty, last frame; a channel
/// whose size divides exactly has no empty trailing frame.
pub fn frames_of(channel_id: ChannelId, channel: &[u8], frame_size_max_bytes: usize) -> Result<Vec<Frame>, FrameError> {
    let data_max = frame_size_max_bytes
        .checked_sub(FRAME_OVERHEAD_BYTES)
        .filter(|max| *max > 0)
        .ok_or(FrameError::FrameSize(frame_size_max_bytes))?
        .min(FRAME_DATA_MAX_BYTES);
    let count = channel.len().div_ceil(data_max).max(1);
    if count > usize::from(u16::MAX) + 1 {
        return Err(FrameError::TooManyFrames { frames: count });
    }
    let frames = (0..count)
        .map(|i| {
            let data = &channel[(i * data_max).min(channel.len())..((i + 1) * data_max).min(channel.len())];
            let number = u16::try_from(i).expect("counted above");
            Frame { channel_id, number, data: Bytes::copy_from_slice(data), is_last: i + 1 == count }
        })
        .collect();
    Ok(frames)
}

/// A batcher transaction's payload carrying `frames`, in order.
pub fn payload_of<'a>(frames: impl IntoIterator<Item = &'a Frame>) -> Vec<u8> {
    let mut out = vec![DERIVATION_VERSION];
    for frame in frames {
        frame.encode_into(&mut out);
    }
    out
}

/// The frames of a batcher transaction's payload; see the module comment.
pub fn parse_frames(payload: &[u8]) -> Result<Vec<Frame>, FrameError> {
    let (&version, mut rest) = payload.split_first().ok_or(FrameError::Empty)?;
    if version != DERIVATION_VERSION {
        return Err(FrameError::Version(version));
    }
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let offset = payload.len() - rest.len();
        let (frame, after) = parse_frame(rest).map_err(|error| match error {
            FrameError::Truncated { offset: within } => FrameError::Truncated { offset: offset + within },
            other => other,
        })?;
        frames.push(frame);
        rest = after;
    }
    if frames.is_empty() {
        return Err(FrameError::Truncated { offset: 1 });
    }
    Ok(frames)
}

/// One frame from the front of `bytes`, and what follows it.
fn parse_frame(bytes: &[u8]) -> Result<(Frame, &[u8]), FrameError> {
    let header = FRAME_OVERHEAD_BYTES - 1;
    let cut = |offset| FrameError::Truncated { offset };
    let fixed = bytes.get(..header).ok_or(cut(bytes.len()))?;
    let channel_id: ChannelId = fixed[..16].try_into().expect("16 bytes");
    let number = u16::from_be_bytes(fixed[16..18].try_into().expect("2 bytes"));
    let length = u32::from_be_bytes(fixed[18..22].try_into().expect("4 bytes"));
    let length = usize::try_from(length).unwrap_or(usize::MAX);
    if length > FRAME_DATA_MAX_BYTES {
        return Err(FrameError::TooLong { bytes: length });
    }
    let data = bytes.get(header..header + length).ok_or(cut(bytes.len()))?;
    let is_last = match bytes.get(header + length) {
        Some(0) => false,
        Some(1) => true,
        Some(other) => return Err(FrameError::IsLast(*other)),
        None => return Err(cut(bytes.len())),
    };
    let frame = Frame { channel_id, number, data: Bytes::copy_from_slice(data), is_last };
    Ok((frame, &bytes[header + length + 1..]))
}

#[cfg(test)]
mod tests {
    use alloy_primitives::hex;
    use proptest::prelude::*;

    use super::*;

    const ID: ChannelId =
        [0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef];

    fn empty(number: u16, is_last: bool) -> Frame {
        Frame { channel_id: ID, number, data: Bytes::new(), is_last }
    }

    /// Byte vectors from op-node's `TestForceCloseTxData`
    /// (op-node/rollup/derive/channel_out_test.go): payloads of empty frames.
    #[test]
    fn payloads_are_op_nodes_bytes() {
        let vectors: [(&[Frame], &str); 3] = [
            (&[empty(0, true)], "00deadbeefdeadbeefdeadbeefdeadbeef00000000000001"),
            (&[empty(0, false)], "00deadbeefdeadbeefdeadbeefdeadbeef00000000000000"),
            (
                &[empty(0, false), empty(1, false)],
                "00deadbeefdeadbeefdeadbeefdeadbeef00000000000000deadbeefdeadbeefdeadbeefdeadbeef00010000000000",
            ),
        ];
        for (frames, expected) in vectors {
            let payload = payload_of(frames);
            assert_eq!(hex::encode(&payload), expected);
            assert_eq!(parse_frames(&payload).unwrap(), frames);
        }
    }

    #[test]
    fn a_channel_is_cut_into_numbered_frames_with_no_empty_last_one() {
        let channel: Vec<u8> = (0..=255).collect();
        // 23 bytes of overhead: 100 bytes of data a frame.
        let frames = frames_of(ID, &channel, 123).unwrap();
        assert_eq!(
            frames.iter().map(|f| (f.number, f.data.len(), f.is_last)).collect::<Vec<_>>(),
            [(0, 100, false), (1, 100, false), (2, 56, true)]
        );
        let exact = frames_of(ID, &channel[..200], 123).unwrap();
        assert_eq!(exact.len(), 2, "no empty trailing frame");
        assert!(exact[1].is_last);
        assert_eq!(frames_of(ID, &[], 123).unwrap(), vec![empty(0, true)]);
        assert!(frames.iter().all(|f| f.encoded_len() <= 123));
        assert_eq!(frames_of(ID, &channel, 23), Err(FrameError::FrameSize(23)));
        let too_many = vec![0u8; usize::from(u16::MAX) + 2];
        assert!(matches!(frames_of(ID, &too_many, 24), Err(FrameError::TooManyFrames { .. })));
    }

    #[test]
    fn a_bad_payload_is_refused_whole() {
        let good = payload_of(&[empty(0, false), empty(1, true)]);
        assert_eq!(parse_frames(&[]), Err(FrameError::Empty));
        assert_eq!(parse_frames(&[0]), Err(FrameError::Truncated { offset: 1 }));
        assert_eq!(parse_frames(&[[1].as_slice(), &good[1..]].concat()), Err(FrameError::Version(1)));
        let mut bad_last = good.clone();
        *bad_last.last_mut().unwrap() = 2;
        assert_eq!(parse_frames(&bad_last), Err(FrameError::IsLast(2)));
        assert!(matches!(parse_frames(&good[..good.len() - 1]), Err(FrameError::Truncated { .. })));
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(parse_frames(&trailing), Err(FrameError::Truncated { .. })));
        let mut long = payload_of(&[empty(0, true)]);
        long[19..23].copy_from_slice(&(u32::try_from(FRAME_DATA_MAX_BYTES).unwrap() + 1).to_be_bytes());
        assert_eq!(parse_frames(&long), Err(FrameError::TooLong { bytes: FRAME_DATA_MAX_BYTES + 1 }));
    }

    proptest! {
        #[test]
        fn frames_round_trip_and_rebuild_the_channel(channel in proptest::collection::vec(any::<u8>(), 0..2_000), size in 24usize..600) {
            let frames = frames_of(ID, &channel, size).unwrap();
            let parsed = parse_frames(&payload_of(&frames)).unwrap();
            prop_assert_eq!(&parsed, &frames);
            let rebuilt: Vec<u8> = parsed.iter().flat_map(|f| f.data.iter().copied()).collect();
            prop_assert_eq!(rebuilt, channel);
        }

        #[test]
        fn parsing_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_frames(&bytes);
        }
    }
}
