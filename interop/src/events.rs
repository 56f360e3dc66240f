//! The events the validator and the relayer follow, read from logs:
//! Mailbox's `Dispatch` (the message itself) and MerkleTreeHook's
//! `InsertedIntoTree` (a message id and its leaf index).

use alloy_primitives::{Address, B256, Log, b256};

use crate::message::{HyperlaneMessage, MessageError};

/// `keccak256("Dispatch(address,uint32,bytes32,bytes)")`.
pub const DISPATCH_TOPIC: B256 = b256!("769f711d20c679153d382254f59892613b58a97cc876b249134ac25c80f9c814");
/// `keccak256("InsertedIntoTree(bytes32,uint32)")`.
pub const INSERTED_INTO_TREE_TOPIC: B256 = b256!("253a3a04cab70d47c1504809242d9350cd81627b4f1d50753e159cf8cd76ed33");
/// `keccak256("ProcessId(bytes32)")`: a message delivered on the destination.
pub const PROCESS_ID_TOPIC: B256 = b256!("1cae38cdd3d3919489272725a5ae62a4f48b2989b0dae843d3c279fee18073a9");

/// A log as a chain client reads it, as the decoders below take it.
pub fn as_log(log: &tephra_l1::L1Log) -> Log {
    Log::new_unchecked(log.address, log.topics.clone(), log.data.clone())
}

/// Why a log that claims to be one of these events is not.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("a {event} log's data is {len} bytes, which is not its ABI encoding")]
    BadData { event: &'static str, len: usize },
    #[error("a Dispatch log's message: {0}")]
    Message(#[from] MessageError),
}

/// The message id and leaf index of an `InsertedIntoTree` log of `hook`;
/// `None` for any other log.
pub fn inserted_into_tree(log: &Log, hook: Address) -> Option<Result<(B256, u32), EventError>> {
    if log.address != hook || log.topics().first() != Some(&INSERTED_INTO_TREE_TOPIC) {
        return None;
    }
    let data = &log.data.data;
    let bad = EventError::BadData { event: "InsertedIntoTree", len: data.len() };
    if data.len() != 64 || data[32..60].iter().any(|b| *b != 0) {
        return Some(Err(bad));
    }
    let index = u32::from_be_bytes(data[60..64].try_into().expect("four bytes"));
    Some(Ok((B256::from_slice(&data[..32]), index)))
}

/// The message of a `Dispatch` log of `mailbox`; `None` for any other log.
pub fn dispatched(log: &Log, mailbox: Address) -> Option<Result<HyperlaneMessage, EventError>> {
    if log.address != mailbox || log.topics().first() != Some(&DISPATCH_TOPIC) {
        return None;
    }
    let data = &log.data.data;
    let bad = || EventError::BadData { event: "Dispatch", len: data.len() };
    // abi.encode(bytes message): an offset (32), a length, the bytes padded.
    let word = |at: usize| -> Option<usize> {
        let word = data.get(at..at.checked_add(32)?)?;
        if word[..24].iter().any(|b| *b != 0) {
            return None;
        }
        usize::try_from(u64::from_be_bytes(word[24..].try_into().ok()?)).ok()
    };
    let message = (|| {
        let offset = word(0)?;
        let len = word(offset)?;
        data.get(offset + 32..offset.checked_add(32)?.checked_add(len)?)
    })();
    Some(match message {
        Some(bytes) => HyperlaneMessage::decode(bytes).map_err(EventError::from),
        None => Err(bad()),
    })
}

#[cfg(test)]
mod tests {
    use alloy_primitives::{Bytes, LogData, U256, keccak256};
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_topics_are_the_events_signatures() {
        assert_eq!(keccak256("Dispatch(address,uint32,bytes32,bytes)"), DISPATCH_TOPIC);
        assert_eq!(keccak256("InsertedIntoTree(bytes32,uint32)"), INSERTED_INTO_TREE_TOPIC);
        assert_eq!(keccak256("ProcessId(bytes32)"), PROCESS_ID_TOPIC);
    }

    fn log(address: Address, topic: B256, data: Vec<u8>) -> Log {
        Log { address, data: LogData::new_unchecked(vec![topic], Bytes::from(data)) }
    }

    #[test]
    fn an_insertion_reads_back_and_other_logs_are_not_one() {
        let hook = Address::with_last_byte(9);
        let id = B256::repeat_byte(7);
        let mut data = id.to_vec();
        data.extend_from_slice(&U256::from(41).to_be_bytes::<32>());
        assert_eq!(inserted_into_tree(&log(hook, INSERTED_INTO_TREE_TOPIC, data.clone()), hook), Some(Ok((id, 41))));
        assert_eq!(inserted_into_tree(&log(Address::ZERO, INSERTED_INTO_TREE_TOPIC, data.clone()), hook), None);
        assert_eq!(inserted_into_tree(&log(hook, DISPATCH_TOPIC, data), hook), None);
        let short = log(hook, INSERTED_INTO_TREE_TOPIC, vec![0; 40]);
        assert!(matches!(inserted_into_tree(&short, hook), Some(Err(EventError::BadData { .. }))));
    }

    #[test]
    fn a_dispatch_reads_back_its_message() {
        let mailbox = Address::with_last_byte(1);
        let message = HyperlaneMessage {
            version: 3,
            nonce: 4,
            origin: 1000,
            sender: B256::repeat_byte(1),
            destination: 2000,
            recipient: B256::repeat_byte(2),
            body: Bytes::from_static(b"hello"),
        };
        let bytes = message.encode();
        let mut data = U256::from(32).to_be_bytes::<32>().to_vec();
        data.extend_from_slice(&U256::from(bytes.len()).to_be_bytes::<32>());
        data.extend_from_slice(&bytes);
        data.resize(data.len().div_ceil(32) * 32, 0);
        assert_eq!(dispatched(&log(mailbox, DISPATCH_TOPIC, data), mailbox), Some(Ok(message)));
    }

    proptest! {
        #[test]
        fn any_log_data_is_read_or_refused_never_a_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let at = Address::ZERO;
            let _ = dispatched(&log(at, DISPATCH_TOPIC, data.clone()), at);
            let _ = inserted_into_tree(&log(at, INSERTED_INTO_TREE_TOPIC, data), at);
        }
    }
}
