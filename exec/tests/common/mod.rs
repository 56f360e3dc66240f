//! What the execution tests share: call data, init code and the committed
//! contracts.
#![allow(dead_code, reason = "each test binary uses a part of it")]

use std::path::{Path, PathBuf};

use alloy_primitives::{Address, U256, hex, keccak256};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("exec/ sits in the workspace").to_path_buf()
}

/// ABI call data: the selector of `signature`, then `words`.
pub fn calldata(signature: &str, words: &[U256]) -> Vec<u8> {
    let mut data = keccak256(signature.as_bytes())[..4].to_vec();
    for word in words {
        data.extend_from_slice(&word.to_be_bytes::<32>());
    }
    data
}

pub fn word(address: Address) -> U256 {
    U256::from_be_slice(address.as_slice())
}

/// A committed contract's creation code (contracts/NAME.bin).
pub fn contract_bytecode(name: &str) -> Vec<u8> {
    let path = workspace_root().join(format!("contracts/{name}.bin"));
    hex::decode(std::fs::read_to_string(&path).expect("contract bytecode").trim()).expect("hex bytecode")
}

/// Init code that deploys `runtime`.
pub fn deploy_code(runtime: &[u8]) -> Vec<u8> {
    let len = u8::try_from(runtime.len()).expect("short runtime");
    let mut code = vec![0x60, len, 0x60, 0x0c, 0x60, 0x00, 0x39, 0x60, len, 0x60, 0x00, 0xf3];
    code.extend_from_slice(runtime);
    code
}
