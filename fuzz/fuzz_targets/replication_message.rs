//! Replication messages as a standby or leader receives them (after the
//! channel's tag has verified): decoding never panics, what decodes encodes
//! back to the same message, and a Records message's frames either split
//! into records or are refused whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tephra_ha::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message::decode(data) else { return };
    let mut encoded = Vec::new();
    message.encode(&mut encoded);
    assert_eq!(Message::decode(&encoded).expect("an encoded message decodes"), message);
    if let Message::Records { frames, .. } = &message {
        let _ = tephra_batchlog::split_frames(frames);
    }
});
