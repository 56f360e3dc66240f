//! An operator's config file: parsing and validation never panic; a bad
//! file is an error that says why.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tephra_node::config::Config;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    if let Err(error) = Config::from_toml(text) {
        assert!(!error.to_string().is_empty(), "a refusal says why");
    }
});
