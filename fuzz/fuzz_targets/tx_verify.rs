//! Raw bytes as a submitted transaction: decode, stateless checks and sender
//! recovery never panic, and a transaction that verifies is exactly the bytes
//! given, under the hash of those bytes.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tephra_exec::{ChainSpec, Verifier, VerifyRules};

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let chain = ChainSpec::dev();
        Verifier::new(VerifyRules {
            chain_id: chain.chain_id(),
            spec: chain.spec_at(1, 0),
            block_gas_limit: 30_000_000,
            base_fee_per_gas: 1_000_000_000,
            allow_unprotected: true,
        })
    })
}

fuzz_target!(|raw: &[u8]| {
    if let Ok(verified) = verifier().verify(raw) {
        assert_eq!(&verified.encoded[..], raw, "a verified transaction is the bytes submitted");
        assert_eq!(verified.hash, alloy_primitives::keccak256(raw), "its hash is theirs");
    }
});
