//! User deposits: OptimismPortal's `TransactionDeposited` log decoded into
//! the deposit transaction it derives (specs/protocol/deposits.md); the
//! transaction type itself lives in tephra-types, which exec shares.
//!
//! The decoder accepts exactly what op-node's `UnmarshalDepositLogEvent`
//! (op-node/rollup/derive/deposit_log.go) accepts and derives the same
//! transaction from it: a deposit tephra would drop or read differently
//! would fork the chain from every verifier's derivation.

use alloy_primitives::{Address, B256, Bytes, U256, b256, keccak256};

pub use tephra_types::deposit::{DEPOSIT_TX_TYPE, Deposit};

use crate::L1Log;

/// `keccak256("TransactionDeposited(address,address,uint256,bytes)")`.
pub const DEPOSIT_EVENT_TOPIC: B256 = b256!("b3813568d9991fc951961fcb4c784893574240a28925604d09fc577c55bb7c32");

/// The only deposit event version (topic 3) defined.
pub const DEPOSIT_EVENT_VERSION_0: B256 = B256::ZERO;

/// The packed head of opaqueData: mint (32), value (32), gas (8), isCreation (1).
const OPAQUE_DATA_HEAD_BYTES: usize = 32 + 32 + 8 + 1;

/// Source hash domains (deposits.md, "Source hash computation").
const USER_DEPOSIT_DOMAIN: u8 = 0;
pub(crate) const L1_INFO_DEPOSIT_DOMAIN: u8 = 1;

/// Why a log of the deposit contract derives no deposit; op-node's checks,
/// in its order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DepositError {
    #[error("{0} topics: TransactionDeposited has 4")]
    TopicCount(usize),
    #[error("topic {0} is not TransactionDeposited")]
    NotADepositEvent(B256),
    #[error("{0} bytes of data: shorter than the opaqueData offset and length")]
    DataTooShort(usize),
    #[error("{0} bytes of data: not whole 32-byte words")]
    DataUnaligned(usize),
    #[error("opaqueData offset {0}: the ABI's is 32")]
    BadOffset(U256),
    #[error("opaqueData length {length} does not fill the {available} bytes after it (with at most 31 of padding)")]
    BadLength { length: U256, available: usize },
    #[error("deposit version {0}: only version 0 is defined")]
    UnknownVersion(B256),
    #[error("opaqueData of {0} bytes: shorter than mint, value, gas and isCreation (73)")]
    OpaqueDataTooShort(usize),
}

/// The source hash of the user deposit logged at `log_index` (its index
/// among all logs of the block) in L1 block `l1_block_hash`.
pub fn user_deposit_source_hash(l1_block_hash: B256, log_index: u64) -> B256 {
    source_hash(USER_DEPOSIT_DOMAIN, l1_block_hash, log_index)
}

/// `keccak256(bytes32(uint256(domain)) ‖ keccak256(l1_block_hash ‖ bytes32(uint256(index))))`.
pub(crate) fn source_hash(domain: u8, l1_block_hash: B256, index: u64) -> B256 {
    let mut inner = [0u8; 64];
    inner[..32].copy_from_slice(l1_block_hash.as_slice());
    inner[32..].copy_from_slice(&U256::from(index).to_be_bytes::<32>());
    let mut outer = [0u8; 64];
    outer[31] = domain;
    outer[32..].copy_from_slice(keccak256(inner).as_slice());
    keccak256(outer)
}

/// The deposit a `TransactionDeposited(address indexed from, address indexed
/// to, uint256 indexed version, bytes opaqueData)` log derives, where
/// `opaqueData = abi.encodePacked(uint256 mint, uint256 value, uint64
/// gasLimit, bool isCreation, bytes data)`. The caller has matched the
/// log's address (the rollup's deposit contract).
pub fn decode_deposit_log(log: &L1Log) -> Result<Deposit, DepositError> {
    let topics = &log.topics;
    if topics.len() != 4 {
        return Err(DepositError::TopicCount(topics.len()));
    }
    if topics[0] != DEPOSIT_EVENT_TOPIC {
        return Err(DepositError::NotADepositEvent(topics[0]));
    }
    let opaque = opaque_data(&log.data)?;
    if topics[3] != DEPOSIT_EVENT_VERSION_0 {
        return Err(DepositError::UnknownVersion(topics[3]));
    }
    if opaque.len() < OPAQUE_DATA_HEAD_BYTES {
        return Err(DepositError::OpaqueDataTooShort(opaque.len()));
    }
    // Indexed addresses are the topics' low 20 bytes; op-node ignores the
    // high 12, which Solidity always zeroes.
    let from = Address::from_slice(&topics[1][12..]);
    let to = Address::from_slice(&topics[2][12..]);
    let gas_limit = u64::from_be_bytes(opaque[64..72].try_into().unwrap_or_default());
    Ok(Deposit {
        source_hash: user_deposit_source_hash(log.block_hash, log.log_index),
        from,
        // Any non-zero isCreation byte is a creation, as in op-node.
        to: (opaque[72] == 0).then_some(to),
        mint: U256::from_be_slice(&opaque[..32]),
        value: U256::from_be_slice(&opaque[32..64]),
        gas_limit,
        is_system_transaction: false,
        data: Bytes::copy_from_slice(&opaque[OPAQUE_DATA_HEAD_BYTES..]),
    })
}

/// The opaqueData of the log's ABI-encoded `bytes`: offset 32, a length,
/// the bytes, zero to 31 bytes of padding to a whole word (op-node does not
/// read the padding's bytes, so neither does this).
fn opaque_data(data: &[u8]) -> Result<&[u8], DepositError> {
    if data.len() < 64 {
        return Err(DepositError::DataTooShort(data.len()));
    }
    if !data.len().is_multiple_of(32) {
        return Err(DepositError::DataUnaligned(data.len()));
    }
    let offset = U256::from_be_slice(&data[..32]);
    if offset != U256::from(32) {
        return Err(DepositError::BadOffset(offset));
    }
    let length = U256::from_be_slice(&data[32..64]);
    let available = data.len() - 64;
    let bad_length = DepositError::BadLength { length, available };
    let length = usize::try_from(length).map_err(|_| bad_length.clone())?;
    // Not past the data, and no more padding than a word needs.
    if length > available || length + 32 <= available {
        return Err(bad_length);
    }
    Ok(&data[64..64 + length])
}

#[cfg(test)]
pub(crate) mod tests {
    use alloy_primitives::{address, hex};

    use super::*;

    /// A TransactionDeposited log as OptimismPortal emits it (op-node's
    /// `MarshalDepositLogEvent`).
    pub(crate) fn deposit_log(block_hash: B256, log_index: u64, deposit: &Deposit) -> L1Log {
        let mut opaque = Vec::new();
        opaque.extend_from_slice(&deposit.mint.to_be_bytes::<32>());
        opaque.extend_from_slice(&deposit.value.to_be_bytes::<32>());
        opaque.extend_from_slice(&deposit.gas_limit.to_be_bytes());
        opaque.push(u8::from(deposit.to.is_none()));
        opaque.extend_from_slice(&deposit.data);
        let mut data = U256::from(32).to_be_bytes::<32>().to_vec();
        data.extend_from_slice(&U256::from(opaque.len()).to_be_bytes::<32>());
        data.extend_from_slice(&opaque);
        data.resize(data.len().div_ceil(32) * 32, 0);
        L1Log {
            address: Address::repeat_byte(0xd0),
            topics: vec![
                DEPOSIT_EVENT_TOPIC,
                deposit.from.into_word(),
                deposit.to.unwrap_or_default().into_word(),
                DEPOSIT_EVENT_VERSION_0,
            ],
            data: data.into(),
            block_hash,
            log_index,
        }
    }

    #[test]
    fn the_event_topic_is_the_keccak_of_its_signature() {
        assert_eq!(keccak256("TransactionDeposited(address,address,uint256,bytes)"), DEPOSIT_EVENT_TOPIC);
    }

    /// Raw log data and topics laid out as kona's deposit tests build them
    /// (op-rs/kona, crates/protocol/protocol/src/deposits.rs).
    fn kona_log(from: Address, to: Address, opaque_length: u64, total: usize) -> L1Log {
        let mut data = vec![0u8; total];
        data[24..32].copy_from_slice(&32u64.to_be_bytes());
        data[56..64].copy_from_slice(&opaque_length.to_be_bytes());
        L1Log {
            address: Address::ZERO,
            topics: vec![DEPOSIT_EVENT_TOPIC, from.into_word(), to.into_word(), B256::ZERO],
            data: data.into(),
            block_hash: B256::ZERO,
            log_index: 0,
        }
    }

    /// kona's `test_decode_deposit_full_succeeds` and
    /// `test_decode_deposit_empty_succeeds` (op-rs/kona,
    /// crates/protocol/protocol/src/deposits.rs): the logs and the exact
    /// EIP-2718 bytes kona (op-alloy's TxDeposit) derives from them. The
    /// source hash is the user deposit's of block 0x00..00, log 0.
    #[test]
    fn kona_deposit_vectors_decode_and_encode_byte_for_byte() {
        let mut log = kona_log(
            address!("1111111111111111111111111111111111111111"),
            address!("2222222222222222222222222222222222222222"),
            128,
            192,
        );
        let mut data = log.data.to_vec();
        data[80..96].copy_from_slice(&10u128.to_be_bytes());
        data[96..128].copy_from_slice(&U256::from(100).to_be_bytes::<32>());
        data[128..136].copy_from_slice(&1000u64.to_be_bytes());
        data[136] = 1;
        log.data = data.into();
        let deposit = decode_deposit_log(&log).unwrap();
        assert_eq!(deposit.to, None, "isCreation 1 makes a creation whatever the to topic");
        assert_eq!((deposit.mint, deposit.value, deposit.gas_limit), (U256::from(10), U256::from(100), 1000));
        assert_eq!(deposit.data, Bytes::from(vec![0u8; 55]));
        assert_eq!(
            deposit.encode_2718(),
            Bytes::from(hex!(
                "7ef875a0ed428e1c45e1d9561b62834e1a2d3015a0caae3bfdc16b4da059ac885b01a145941111111111111111111111111111111111111111800a648203e880b700000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            ))
        );
        let empty = kona_log(
            address!("ffffffffffffffffffffffffffffffffffffffff"),
            address!("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"),
            128,
            192,
        );
        let deposit = decode_deposit_log(&empty).unwrap();
        assert_eq!(
            deposit.encode_2718(),
            Bytes::from(hex!(
                "7ef887a0ed428e1c45e1d9561b62834e1a2d3015a0caae3bfdc16b4da059ac885b01a14594ffffffffffffffffffffffffffffffffffffffff94bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb80808080b700000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            ))
        );
        assert_eq!(
            user_deposit_source_hash(B256::ZERO, 0),
            b256!("ed428e1c45e1d9561b62834e1a2d3015a0caae3bfdc16b4da059ac885b01a145")
        );
    }

    #[test]
    fn the_source_hash_commits_to_the_block_and_the_log_index_in_the_user_domain() {
        let block = B256::repeat_byte(7);
        let mut inner = block.to_vec();
        inner.extend_from_slice(&U256::from(3).to_be_bytes::<32>());
        let mut outer = [0u8; 32].to_vec();
        outer.extend_from_slice(keccak256(&inner).as_slice());
        assert_eq!(user_deposit_source_hash(block, 3), keccak256(&outer));
        assert_ne!(user_deposit_source_hash(block, 3), user_deposit_source_hash(block, 4));
        assert_ne!(user_deposit_source_hash(block, 3), source_hash(L1_INFO_DEPOSIT_DOMAIN, block, 3));
    }

    #[test]
    fn a_deposit_round_trips_through_its_log_with_every_field() {
        let deposit = Deposit {
            source_hash: user_deposit_source_hash(B256::repeat_byte(9), 5),
            from: Address::repeat_byte(0xf1),
            to: Some(Address::repeat_byte(0x70)),
            mint: U256::from(1) << 200,
            value: U256::MAX,
            gas_limit: u64::MAX,
            is_system_transaction: false,
            data: Bytes::from(vec![0xab; 33]),
        };
        assert_eq!(decode_deposit_log(&deposit_log(B256::repeat_byte(9), 5, &deposit)).unwrap(), deposit);
        let creation = Deposit { to: None, data: Bytes::new(), mint: U256::ZERO, ..deposit };
        assert_eq!(decode_deposit_log(&deposit_log(B256::repeat_byte(9), 5, &creation)).unwrap(), creation);
    }

    #[test]
    fn malformed_logs_are_errors_never_panics() {
        let good = deposit_log(
            B256::ZERO,
            0,
            &Deposit {
                source_hash: B256::ZERO,
                from: Address::repeat_byte(1),
                to: Some(Address::repeat_byte(2)),
                mint: U256::ZERO,
                value: U256::ZERO,
                gas_limit: 21_000,
                is_system_transaction: false,
                data: Bytes::from(vec![1, 2, 3]),
            },
        );
        let with = |edit: &dyn Fn(&mut L1Log)| {
            let mut log = good.clone();
            edit(&mut log);
            decode_deposit_log(&log)
        };
        let set_data = |data: Vec<u8>| move |log: &mut L1Log| log.data = data.clone().into();
        let word = |index: usize, value: U256| {
            let mut data = good.data.to_vec();
            data[index * 32..index * 32 + 32].copy_from_slice(&value.to_be_bytes::<32>());
            data
        };
        assert_eq!(with(&|log| log.topics.truncate(3)), Err(DepositError::TopicCount(3)));
        assert_eq!(with(&|log| log.topics[0] = B256::ZERO), Err(DepositError::NotADepositEvent(B256::ZERO)));
        assert_eq!(
            with(&|log| log.topics[3] = B256::with_last_byte(1)),
            Err(DepositError::UnknownVersion(B256::with_last_byte(1)))
        );
        assert_eq!(with(&set_data(vec![0; 63])), Err(DepositError::DataTooShort(63)));
        assert_eq!(with(&set_data(vec![0; 65])), Err(DepositError::DataUnaligned(65)));
        assert_eq!(with(&set_data(word(0, U256::from(64)))), Err(DepositError::BadOffset(U256::from(64))));
        let available = good.data.len() - 64;
        for length in [U256::from(available + 1), U256::from(available - 32), U256::MAX] {
            assert_eq!(
                with(&set_data(word(1, length))),
                Err(DepositError::BadLength { length, available }),
                "{length}"
            );
        }
        // A length of a full word less padding is the least the data allows.
        assert_eq!(with(&set_data(word(1, U256::from(72)))), Err(DepositError::OpaqueDataTooShort(72)));
        // Every cut of the data short of whole is refused, none panics.
        for cut in 0..good.data.len() {
            assert!(with(&set_data(good.data[..cut].to_vec())).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn decoding_follows_op_node_where_it_is_lenient() {
        let mut log = deposit_log(
            B256::ZERO,
            0,
            &Deposit {
                source_hash: B256::ZERO,
                from: Address::repeat_byte(1),
                to: Some(Address::repeat_byte(2)),
                mint: U256::ZERO,
                value: U256::ZERO,
                gas_limit: 0,
                is_system_transaction: false,
                data: Bytes::new(),
            },
        );
        // High bytes of an address topic are ignored; isCreation 2 creates.
        log.topics[1].0[0] = 0xff;
        let mut data = log.data.to_vec();
        data[64 + 72] = 2;
        log.data = data.into();
        let deposit = decode_deposit_log(&log).unwrap();
        assert_eq!(deposit.from, Address::repeat_byte(1));
        assert_eq!(deposit.to, None);
        assert_eq!(deposit.gas_limit, 0, "the portal enforces the gas floor, derivation does not");
    }
}
