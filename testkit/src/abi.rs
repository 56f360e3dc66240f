//! ABI call data for the tests' contract calls (Solidity's encoding of
//! static arguments: a 4-byte selector, then 32-byte words).

use alloy_primitives::{Address, U256, keccak256};

/// The 4-byte selector of `signature`, for example `transfer(address,uint256)`.
pub fn selector(signature: &str) -> [u8; 4] {
    let hash = keccak256(signature.as_bytes());
    [hash[0], hash[1], hash[2], hash[3]]
}

/// Call data: the selector of `signature`, then `words`.
pub fn calldata(signature: &str, words: &[U256]) -> Vec<u8> {
    let mut data = selector(signature).to_vec();
    for word in words {
        data.extend_from_slice(&word.to_be_bytes::<32>());
    }
    data
}

/// An address as an ABI word (left-padded).
pub fn word(address: Address) -> U256 {
    U256::from_be_slice(address.as_slice())
}

/// OptimismPortal's `depositTransaction(address,uint256,uint64,bool,bytes)`
/// call data (the dynamic `bytes` after the five head words, padded).
pub fn deposit_transaction_call(to: Address, value: U256, gas_limit: u64, is_creation: bool, data: &[u8]) -> Vec<u8> {
    let mut call = selector("depositTransaction(address,uint256,uint64,bool,bytes)").to_vec();
    let head = [word(to), value, U256::from(gas_limit), U256::from(u8::from(is_creation)), U256::from(5 * 32)];
    for value in head.into_iter().chain([U256::from(data.len())]) {
        call.extend_from_slice(&value.to_be_bytes::<32>());
    }
    call.extend_from_slice(data);
    call.resize(4 + (call.len() - 4).div_ceil(32) * 32, 0);
    call
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_call_data_matches_solidity() {
        // cast calldata "transfer(address,uint256)" 0x...b0b0 250
        let data = calldata("transfer(address,uint256)", &[word(Address::with_last_byte(0xb0)), U256::from(250)]);
        assert_eq!(
            alloy_primitives::hex::encode(&data),
            "a9059cbb00000000000000000000000000000000000000000000000000000000000000b0\
             00000000000000000000000000000000000000000000000000000000000000fa"
        );
    }
}
