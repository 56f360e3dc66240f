//! What a Hyperlane validator and relayer read from others: a Dispatch log's
//! message, an InsertedIntoTree log, a message's bytes, another validator's
//! signed checkpoint file and announcement. Decoding never panics; what is
//! refused is an error; a message that decodes encodes back to its bytes.
#![no_main]

use alloy_primitives::{Address, Bytes, Log};
use libfuzzer_sys::fuzz_target;
use tephra_interop::{
    HyperlaneMessage, SignedCheckpoint,
    checkpoint::Announcement,
    events::{DISPATCH_TOPIC, INSERTED_INTO_TREE_TOPIC, dispatched, inserted_into_tree},
};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(message) = HyperlaneMessage::decode(bytes) {
        assert_eq!(message.encode(), bytes, "a decoded message re-encodes as it came");
    }
    for topic in [DISPATCH_TOPIC, INSERTED_INTO_TREE_TOPIC] {
        let log = Log::new_unchecked(Address::ZERO, vec![topic], Bytes::copy_from_slice(bytes));
        if let Some(Ok(message)) = dispatched(&log, Address::ZERO) {
            let _ = message.id();
        }
        let _ = inserted_into_tree(&log, Address::ZERO);
    }
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    if let Ok(checkpoint) = SignedCheckpoint::from_json(text) {
        let _ = checkpoint.signer();
        let again = SignedCheckpoint::from_json(&checkpoint.to_json()).expect("a written checkpoint reads back");
        assert_eq!(again, checkpoint);
    }
    if let Ok((announcement, _)) = Announcement::from_signed_json(text) {
        let _ = announcement.digest();
    }
});
