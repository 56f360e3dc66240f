//! What the execution tests share: call data, init code and the committed
//! contracts.
#![allow(dead_code, reason = "each test binary uses a part of it")]

use alloy_primitives::hex;

#[allow(unused_imports, reason = "each test binary uses a part of the kit")]
pub use tephra_testkit::{
    abi::{calldata, word},
    workspace_root,
};

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
