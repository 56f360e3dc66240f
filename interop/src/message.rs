//! A Hyperlane message: `abi.encodePacked(uint8 version, uint32 nonce,
//! uint32 origin, bytes32 sender, uint32 destination, bytes32 recipient,
//! bytes body)`; its id is the keccak of those bytes (`Message.sol`).

use alloy_primitives::{Address, B256, Bytes, keccak256};

/// The message version the pinned Mailbox dispatches and accepts.
pub const VERSION: u8 = 3;

/// Bytes before the body.
pub const HEADER_BYTES: usize = 1 + 4 + 4 + 32 + 4 + 32;

/// The largest body a message may carry here (the Mailbox has no limit of
/// its own: the block's gas is one); a relayer carries nothing larger.
pub const BODY_BYTES_MAX: usize = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HyperlaneMessage {
    pub version: u8,
    pub nonce: u32,
    pub origin: u32,
    pub sender: B256,
    pub destination: u32,
    pub recipient: B256,
    pub body: Bytes,
}

/// Why bytes are not a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("a message is at least {HEADER_BYTES} bytes; this is {0}")]
    TooShort(usize),
    #[error("a message body is at most {BODY_BYTES_MAX} bytes; this is {0}")]
    BodyTooLarge(usize),
}

impl HyperlaneMessage {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + self.body.len());
        out.push(self.version);
        out.extend_from_slice(&self.nonce.to_be_bytes());
        out.extend_from_slice(&self.origin.to_be_bytes());
        out.extend_from_slice(self.sender.as_slice());
        out.extend_from_slice(&self.destination.to_be_bytes());
        out.extend_from_slice(self.recipient.as_slice());
        out.extend_from_slice(&self.body);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        if bytes.len() < HEADER_BYTES {
            return Err(MessageError::TooShort(bytes.len()));
        }
        let body = &bytes[HEADER_BYTES..];
        if body.len() > BODY_BYTES_MAX {
            return Err(MessageError::BodyTooLarge(body.len()));
        }
        let u32_at = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("four bytes"));
        Ok(Self {
            version: bytes[0],
            nonce: u32_at(1),
            origin: u32_at(5),
            sender: B256::from_slice(&bytes[9..41]),
            destination: u32_at(41),
            recipient: B256::from_slice(&bytes[45..77]),
            body: Bytes::copy_from_slice(body),
        })
    }

    /// The message id: what the tree holds and validators sign.
    pub fn id(&self) -> B256 {
        keccak256(self.encode())
    }

    /// The recipient as an EVM address (its low 20 bytes).
    pub fn recipient_address(&self) -> Address {
        Address::from_word(self.recipient)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    /// Hyperlane's own vector (`vectors/message.json` at the pinned release).
    #[test]
    fn the_hyperlane_vector_encodes_to_its_id() {
        let vectors: Vec<Value> = serde_json::from_str(include_str!("../testdata/message.json")).unwrap();
        for v in vectors {
            let body: Vec<u8> =
                v["body"].as_array().unwrap().iter().map(|b| u8::try_from(b.as_u64().unwrap()).unwrap()).collect();
            let message = HyperlaneMessage {
                version: u8::try_from(v["version"].as_u64().unwrap()).unwrap(),
                nonce: u32::try_from(v["nonce"].as_u64().unwrap()).unwrap(),
                origin: u32::try_from(v["origin"].as_u64().unwrap()).unwrap(),
                sender: v["sender"].as_str().unwrap().parse().unwrap(),
                destination: u32::try_from(v["destination"].as_u64().unwrap()).unwrap(),
                recipient: v["recipient"].as_str().unwrap().parse().unwrap(),
                body: body.into(),
            };
            assert_eq!(message.id(), v["id"].as_str().unwrap().parse::<B256>().unwrap());
            assert_eq!(HyperlaneMessage::decode(&message.encode()).unwrap(), message);
        }
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_are_refused_and_what_decodes_encodes_back(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            match HyperlaneMessage::decode(&bytes) {
                Ok(message) => prop_assert_eq!(message.encode(), bytes),
                Err(MessageError::TooShort(n)) => prop_assert!(n < HEADER_BYTES),
                Err(MessageError::BodyTooLarge(_)) => prop_assert!(false, "bodies this small fit"),
            }
        }
    }
}
