//! A record's frame, as segments hold it and replication carries it:
//! `len u32 | crc32c u32 | payload`, little-endian, the checksum over the
//! payload.

use crate::{
    LogError, RECORD_SIZE_MAX_BYTES,
    record::{DecodeError, Record, payload_len},
};

/// A frame's length and checksum.
pub(crate) const HEADER_BYTES: usize = 8;
/// The largest frame the log writes: the largest record and its header.
pub const FRAME_BYTES_MAX: usize = RECORD_SIZE_MAX_BYTES + HEADER_BYTES;

/// Why bytes are not a good frame. The messages read as the log's warnings
/// and refusals always have.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a header cut short ({bytes} bytes)")]
    HeaderCutShort { bytes: usize },
    #[error("a length of {bytes} bytes, above the record limit")]
    LengthAboveLimit { bytes: usize },
    #[error("a length of {bytes} bytes with {left} left")]
    LengthBeyondData { bytes: usize, left: usize },
    #[error("checksum {computed:#010x}, recorded {recorded:#010x}")]
    Checksum { computed: u32, recorded: u32 },
    /// The frame is whole, its payload is not a record.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl Record {
    /// The record as a segment holds it: length, crc32c of the payload,
    /// payload. Refused, as `encode` refuses it, above `RECORD_SIZE_MAX_BYTES`.
    pub fn frame(&self) -> Result<Vec<u8>, LogError> {
        let payload = self.encode()?;
        let len = payload_len(payload.len())?;
        let mut frame = Vec::with_capacity(HEADER_BYTES + payload.len());
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        frame.extend_from_slice(&payload);
        Ok(frame)
    }
}

/// The payload of the frame at the start of `bytes`, or why not.
pub(crate) fn parse_frame(bytes: &[u8]) -> Result<&[u8], FrameError> {
    let Some((header, rest)) = bytes.split_first_chunk::<HEADER_BYTES>() else {
        return Err(FrameError::HeaderCutShort { bytes: bytes.len() });
    };
    let [l0, l1, l2, l3, c0, c1, c2, c3] = *header;
    let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
    let recorded = u32::from_le_bytes([c0, c1, c2, c3]);
    if len > RECORD_SIZE_MAX_BYTES {
        return Err(FrameError::LengthAboveLimit { bytes: len });
    }
    let Some(payload) = rest.get(..len) else {
        return Err(FrameError::LengthBeyondData { bytes: len, left: rest.len() });
    };
    let computed = crc32c::crc32c(payload);
    if computed != recorded {
        return Err(FrameError::Checksum { computed, recorded });
    }
    Ok(payload)
}

/// The record framed at the start of `bytes`: its frame's length and the
/// record, or why not.
pub(crate) fn parse_record(bytes: &[u8]) -> Result<(usize, Record), FrameError> {
    let payload = parse_frame(bytes)?;
    Ok((HEADER_BYTES + payload.len(), Record::decode(payload)?))
}

/// Splits `bytes` (log frames end to end, as replication carries them) into
/// each record's frame and the record; any damage refuses the whole message.
pub fn split_frames(bytes: &[u8]) -> Result<Vec<(&[u8], Record)>, FrameError> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let (len, record) = parse_record(&bytes[offset..])?;
        out.push((&bytes[offset..offset + len], record));
        offset += len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use alloy_primitives::{Address, Bytes};

    use super::*;
    use crate::fixtures::samples;

    /// A Batch record of one transaction whose payload is `payload_bytes` long.
    fn batch_of_payload(payload_bytes: usize) -> Record {
        // Tag, number, count, sender, the raw transaction's length.
        let overhead = 1 + 8 + 4 + 20 + 4;
        Record::Batch { number: 1, txs: vec![(Address::ZERO, Bytes::from(vec![0xab; payload_bytes - overhead]))] }
    }

    #[test]
    fn the_record_size_limit_is_checked_in_every_build() {
        let largest = batch_of_payload(RECORD_SIZE_MAX_BYTES);
        let frame = largest.frame().unwrap();
        assert_eq!(frame.len(), FRAME_BYTES_MAX);
        assert_eq!(split_frames(&frame).unwrap()[0].1, largest);
        let over = batch_of_payload(RECORD_SIZE_MAX_BYTES + 1);
        for refused in [over.frame().map(|_| ()), over.encode().map(|_| ())] {
            assert!(
                matches!(
                    refused,
                    Err(LogError::RecordTooLarge { bytes, max_bytes: RECORD_SIZE_MAX_BYTES })
                        if bytes == RECORD_SIZE_MAX_BYTES + 1
                ),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn damage_is_named_as_the_log_always_named_it() {
        let frame = samples()[3].frame().unwrap();
        let cases: [(Vec<u8>, FrameError, &str); 5] = [
            (vec![1, 2, 3], FrameError::HeaderCutShort { bytes: 3 }, "a header cut short (3 bytes)"),
            (
                [&u32::MAX.to_le_bytes()[..], &[0; 4]].concat(),
                FrameError::LengthAboveLimit { bytes: u32::MAX as usize },
                "a length of 4294967295 bytes, above the record limit",
            ),
            (frame[..20].to_vec(), FrameError::LengthBeyondData { bytes: frame.len() - 8, left: 12 }, ""),
            ([&[1, 0, 0, 0], &[0; 4][..], &[5]].concat(), checksum_of(&[5]), ""),
            (frame_of(&[9]), FrameError::Decode(DecodeError::UnknownTag(9)), "unknown record tag 9"),
        ];
        for (bytes, error, message) in cases {
            let got = split_frames(&bytes).unwrap_err();
            assert_eq!(got, error);
            if !message.is_empty() {
                assert_eq!(got.to_string(), message);
            }
        }
        assert_eq!(
            FrameError::LengthBeyondData { bytes: 97, left: 12 }.to_string(),
            "a length of 97 bytes with 12 left"
        );
        assert_eq!(
            FrameError::Checksum { computed: 0xab, recorded: 0 }.to_string(),
            "checksum 0x000000ab, recorded 0x00000000"
        );
        let decode_messages = [
            (DecodeError::Truncated { needed: 8, left: 3 }, "needs 8 more bytes, 3 left"),
            (DecodeError::CountExceedsRecord { count: 7 }, "count 7 exceeds the record"),
            (DecodeError::TooManyTopics(5), "5 topics"),
            (DecodeError::TrailingBytes(2), "2 trailing bytes"),
        ];
        for (error, message) in decode_messages {
            assert_eq!(FrameError::from(error).to_string(), message);
        }
    }

    /// The checksum error of a frame of `payload` recorded with checksum 0.
    fn checksum_of(payload: &[u8]) -> FrameError {
        FrameError::Checksum { computed: crc32c::crc32c(payload), recorded: 0 }
    }

    /// A good frame around `payload`, record or not.
    fn frame_of(payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap();
        [&len.to_le_bytes()[..], &crc32c::crc32c(payload).to_le_bytes(), payload].concat()
    }
}
