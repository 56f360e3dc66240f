//! The L1-info deposit every L2 block starts with, in its Isthmus form
//! (specs/protocol/isthmus/l1-attributes.md): a call of L1Block's
//! `setL1BlockValuesIsthmus()` whose arguments are packed big-endian after
//! the selector, 176 bytes in all, from the L1 origin and the SystemConfig.
//!
//! Only the Isthmus form: a chain whose Isthmus activates after genesis
//! calls `setL1BlockValuesEcotone()` in its activation block (before the
//! L1Block upgrade), which this module does not build.

use alloy_primitives::{Address, B256, Bytes, U256, address};
use tephra_types::rollup::GenesisSystemConfig;

use crate::{
    L1Block,
    deposit::{Deposit, L1_INFO_DEPOSIT_DOMAIN, source_hash},
};

/// The L1 attributes depositor account (deposits.md): an EOA no one holds.
pub const L1_INFO_DEPOSITOR: Address = address!("deaddeaddeaddeaddeaddeaddeaddeaddead0001");

/// The L1Block predeploy the L1-info deposit calls.
pub const L1_BLOCK_PREDEPLOY: Address = address!("4200000000000000000000000000000000000015");

/// The L1-info deposit's gas limit since Regolith (deposits.md).
pub const L1_INFO_GAS_LIMIT: u64 = 1_000_000;

/// `bytes4(keccak256("setL1BlockValuesIsthmus()"))`.
pub const SET_L1_BLOCK_VALUES_ISTHMUS_SELECTOR: [u8; 4] = [0x09, 0x89, 0x99, 0xbe];

/// The Isthmus calldata's length: the selector, 5 words' worth of packed
/// fields (up to the batcher hash), the operator fee scalar and constant.
pub const L1_INFO_ISTHMUS_CALLDATA_BYTES: usize = 4 + 32 * 5 + 4 + 8;

/// SystemConfig `scalar` versions (system-config.md, "Scalars").
const SCALAR_VERSION_BEDROCK: u8 = 0;
const SCALAR_VERSION_ECOTONE: u8 = 1;

/// The SystemConfig values an L1-info deposit carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SystemConfigValues {
    pub batcher: Address,
    pub base_fee_scalar: u32,
    pub blob_base_fee_scalar: u32,
    pub operator_fee_scalar: u32,
    pub operator_fee_constant: u64,
}

/// Why a SystemConfig value cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SystemConfigError {
    #[error("scalar {0}: version 1 with non-zero padding")]
    EcotoneScalarPadding(B256),
    #[error("scalar {0}: unknown version {1}")]
    UnknownScalarVersion(B256, u8),
}

/// Why calldata is not an Isthmus L1-info call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum L1InfoError {
    #[error("{0} bytes: Isthmus L1-info calldata is {L1_INFO_ISTHMUS_CALLDATA_BYTES}")]
    Length(usize),
    #[error("selector {0:02x?} is not setL1BlockValuesIsthmus()")]
    Selector([u8; 4]),
    #[error("batcher hash {0} is not a left-padded address")]
    BatcherHash(B256),
}

impl SystemConfigValues {
    /// The values of the rollup's genesis SystemConfig.
    pub fn from_genesis(config: &GenesisSystemConfig) -> Result<Self, SystemConfigError> {
        let (base_fee_scalar, blob_base_fee_scalar) = decode_scalar(config.scalar)?;
        let (operator_fee_scalar, operator_fee_constant) = decode_operator_fee_params(config.operator_fee_params);
        Ok(Self {
            batcher: config.batcher_addr,
            base_fee_scalar,
            blob_base_fee_scalar,
            operator_fee_scalar,
            operator_fee_constant,
        })
    }
}

/// The base fee and blob base fee scalars of a SystemConfig `scalar`
/// (system-config.md): version 0 carries the base fee scalar in bytes 28..32
/// and no blob scalar; version 1 the blob scalar in bytes 24..28 and the base
/// fee scalar in 28..32. As op-node's `EcotoneScalars`, a version-0 scalar
/// with non-zero padding means a base fee scalar of u32::MAX (the spec's
/// rule), and version-1 padding or another version is refused.
pub fn decode_scalar(scalar: B256) -> Result<(u32, u32), SystemConfigError> {
    let word = |range: std::ops::Range<usize>| u32::from_be_bytes(scalar[range].try_into().unwrap_or_default());
    match scalar[0] {
        SCALAR_VERSION_BEDROCK if scalar[1..28].iter().any(|&b| b != 0) => Ok((u32::MAX, 0)),
        SCALAR_VERSION_BEDROCK => Ok((word(28..32), 0)),
        SCALAR_VERSION_ECOTONE if scalar[1..24].iter().any(|&b| b != 0) => {
            Err(SystemConfigError::EcotoneScalarPadding(scalar))
        }
        SCALAR_VERSION_ECOTONE => Ok((word(28..32), word(24..28))),
        version => Err(SystemConfigError::UnknownScalarVersion(scalar, version)),
    }
}

/// The operator fee scalar (bytes 20..24) and constant (24..32) of
/// SystemConfig `operatorFeeParams` = `uint256(scalar) << 64 | constant`
/// (isthmus/system-config.md).
pub fn decode_operator_fee_params(params: B256) -> (u32, u64) {
    let scalar = u32::from_be_bytes(params[20..24].try_into().unwrap_or_default());
    let constant = u64::from_be_bytes(params[24..32].try_into().unwrap_or_default());
    (scalar, constant)
}

/// The fields of an Isthmus L1-info call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L1InfoIsthmus {
    pub base_fee_scalar: u32,
    pub blob_base_fee_scalar: u32,
    /// L2 blocks since the epoch began: 0 in the epoch's first block.
    pub sequence_number: u64,
    pub l1_timestamp: u64,
    pub l1_number: u64,
    pub l1_base_fee: U256,
    pub l1_blob_base_fee: U256,
    pub l1_hash: B256,
    /// The batcher address, left-padded to a word.
    pub batcher_hash: B256,
    pub operator_fee_scalar: u32,
    pub operator_fee_constant: u64,
}

impl L1InfoIsthmus {
    /// The L1 info of L2 block `sequence_number` of the epoch of L1 origin
    /// `origin`; `blob_base_fee_update_fraction` is the L1 fork's at the
    /// origin (`crate::block::BLOB_BASE_FEE_UPDATE_FRACTION_*`).
    pub fn new(
        origin: &L1Block,
        sequence_number: u64,
        config: &SystemConfigValues,
        blob_base_fee_update_fraction: u64,
    ) -> Self {
        Self {
            base_fee_scalar: config.base_fee_scalar,
            blob_base_fee_scalar: config.blob_base_fee_scalar,
            sequence_number,
            l1_timestamp: origin.timestamp,
            l1_number: origin.number,
            l1_base_fee: U256::from(origin.base_fee_per_gas),
            l1_blob_base_fee: origin.blob_base_fee(blob_base_fee_update_fraction),
            l1_hash: origin.hash,
            batcher_hash: config.batcher.into_word(),
            operator_fee_scalar: config.operator_fee_scalar,
            operator_fee_constant: config.operator_fee_constant,
        }
    }

    /// The calldata: the selector, then each field big-endian in its width.
    pub fn calldata(&self) -> [u8; L1_INFO_ISTHMUS_CALLDATA_BYTES] {
        let mut out = [0u8; L1_INFO_ISTHMUS_CALLDATA_BYTES];
        let fields: [&[u8]; 12] = [
            &SET_L1_BLOCK_VALUES_ISTHMUS_SELECTOR,
            &self.base_fee_scalar.to_be_bytes(),
            &self.blob_base_fee_scalar.to_be_bytes(),
            &self.sequence_number.to_be_bytes(),
            &self.l1_timestamp.to_be_bytes(),
            &self.l1_number.to_be_bytes(),
            &self.l1_base_fee.to_be_bytes::<32>(),
            &self.l1_blob_base_fee.to_be_bytes::<32>(),
            self.l1_hash.as_slice(),
            self.batcher_hash.as_slice(),
            &self.operator_fee_scalar.to_be_bytes(),
            &self.operator_fee_constant.to_be_bytes(),
        ];
        let mut at = 0;
        for field in fields {
            out[at..at + field.len()].copy_from_slice(field);
            at += field.len();
        }
        out
    }

    /// The fields of Isthmus L1-info calldata (an L2 block's first
    /// transaction's input), for RPC and checks.
    pub fn decode(calldata: &[u8]) -> Result<Self, L1InfoError> {
        let calldata: &[u8; L1_INFO_ISTHMUS_CALLDATA_BYTES] =
            calldata.try_into().map_err(|_| L1InfoError::Length(calldata.len()))?;
        let mut reader = Reader { bytes: calldata, at: 0 };
        let selector = reader.take::<4>();
        if selector != SET_L1_BLOCK_VALUES_ISTHMUS_SELECTOR {
            return Err(L1InfoError::Selector(selector));
        }
        let info = Self {
            base_fee_scalar: u32::from_be_bytes(reader.take()),
            blob_base_fee_scalar: u32::from_be_bytes(reader.take()),
            sequence_number: u64::from_be_bytes(reader.take()),
            l1_timestamp: u64::from_be_bytes(reader.take()),
            l1_number: u64::from_be_bytes(reader.take()),
            l1_base_fee: U256::from_be_bytes(reader.take::<32>()),
            l1_blob_base_fee: U256::from_be_bytes(reader.take::<32>()),
            l1_hash: B256::from(reader.take::<32>()),
            batcher_hash: B256::from(reader.take::<32>()),
            operator_fee_scalar: u32::from_be_bytes(reader.take()),
            operator_fee_constant: u64::from_be_bytes(reader.take()),
        };
        if info.batcher_hash[..12].iter().any(|&b| b != 0) {
            return Err(L1InfoError::BatcherHash(info.batcher_hash));
        }
        Ok(info)
    }

    /// The batcher address the batcher hash pads.
    pub fn batcher(&self) -> Address {
        Address::from_slice(&self.batcher_hash[12..])
    }

    /// The deposit's source hash: the L1-info domain, the origin's hash and
    /// the sequence number (deposits.md).
    pub fn source_hash(&self) -> B256 {
        l1_info_source_hash(self.l1_hash, self.sequence_number)
    }

    /// The L1-info deposit transaction.
    pub fn deposit(&self) -> Deposit {
        Deposit {
            source_hash: self.source_hash(),
            from: L1_INFO_DEPOSITOR,
            to: Some(L1_BLOCK_PREDEPLOY),
            mint: U256::ZERO,
            value: U256::ZERO,
            gas_limit: L1_INFO_GAS_LIMIT,
            is_system_transaction: false,
            data: Bytes::copy_from_slice(&self.calldata()),
        }
    }
}

/// `keccak256(bytes32(uint256(1)) ‖ keccak256(l1_block_hash ‖ bytes32(uint256(sequence_number))))`.
pub fn l1_info_source_hash(l1_block_hash: B256, sequence_number: u64) -> B256 {
    source_hash(L1_INFO_DEPOSIT_DOMAIN, l1_block_hash, sequence_number)
}

/// Reads fixed-width fields in order from calldata of a checked length.
struct Reader<'a> {
    bytes: &'a [u8; L1_INFO_ISTHMUS_CALLDATA_BYTES],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        // The layout's widths add up to the checked length: never short.
        if let Some(field) = self.bytes.get(self.at..self.at + N) {
            out.copy_from_slice(field);
        }
        self.at += N;
        out
    }
}

#[cfg(test)]
mod tests {
    use alloy_primitives::{b256, hex, keccak256};

    use super::*;
    use crate::block::BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE;

    #[test]
    fn the_selector_is_setl1blockvaluesisthmus() {
        assert_eq!(keccak256("setL1BlockValuesIsthmus()")[..4], SET_L1_BLOCK_VALUES_ISTHMUS_SELECTOR);
        assert_eq!(L1_INFO_ISTHMUS_CALLDATA_BYTES, 176);
    }

    /// A Base mainnet Isthmus L1-info deposit, whole, with its transaction
    /// hash: base/base, crates/flashblocks-rpc/src/pending.rs (`default_fb`).
    /// Its L1 origin is Ethereum block 23,013,247; sequence number 2.
    const BASE_MAINNET_L1_INFO_TX: [u8; 264] = hex!(
        "7ef90104a06c0c775b6b492bab9d7e81abdf27f77cafb698551226455a82f559e0f93fea3794deaddeaddeaddeaddeaddeaddeaddeaddead00019442000000000000000000000000000000000000158080830f424080b8b0098999be000008dd00101c1200000000000000020000000068869d6300000000015f277f000000000000000000000000000000000000000000000000000000000d42ac290000000000000000000000000000000000000000000000000000000000000001abf52777e63959936b1bf633a2a643f0da38d63deffe49452fed1bf8a44975d50000000000000000000000005050f69a9786f081509234f1a7f4684b5e5b76c9000000000000000000000000"
    );

    #[test]
    fn base_mainnet_l1_info_deposit_is_rebuilt_byte_for_byte_from_its_origin() {
        let origin = L1Block {
            number: 23_013_247,
            hash: b256!("abf52777e63959936b1bf633a2a643f0da38d63deffe49452fed1bf8a44975d5"),
            parent_hash: B256::ZERO,
            timestamp: 1_753_652_579,
            base_fee_per_gas: 222_473_257,
            excess_blob_gas: Some(0),
            blob_gas_used: Some(0),
            mix_hash: B256::ZERO,
            parent_beacon_block_root: None,
        };
        let config = SystemConfigValues {
            batcher: address!("5050f69a9786f081509234f1a7f4684b5e5b76c9"),
            base_fee_scalar: 2269,
            blob_base_fee_scalar: 1_055_762,
            operator_fee_scalar: 0,
            operator_fee_constant: 0,
        };
        let info = L1InfoIsthmus::new(&origin, 2, &config, BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE);
        let deposit = info.deposit();
        assert_eq!(deposit.source_hash, b256!("6c0c775b6b492bab9d7e81abdf27f77cafb698551226455a82f559e0f93fea37"));
        assert_eq!(deposit.encode_2718(), Bytes::from(BASE_MAINNET_L1_INFO_TX));
        assert_eq!(deposit.tx_hash(), b256!("ba56c8b0deb460ff070f8fca8e2ee01e51a3db27841cc862fdd94cc1a47662b6"));
        assert_eq!(L1InfoIsthmus::decode(&deposit.data), Ok(info));
    }

    /// kona's `RAW_ISTHMUS_INFO_TX` (crates/protocol/protocol/src/test_utils.rs),
    /// with a non-zero operator fee scalar (0xabcd) and constant (0xdcba).
    #[test]
    fn kona_isthmus_calldata_decodes_and_encodes_back() {
        let raw = hex!(
            "098999be00000558000c5fc5000000000000000500000000661c277300000000012bec20000000000000000000000000000000000000000000000000000000026e9f109900000000000000000000000000000000000000000000000000000000000000011c4c84c50740386c7dc081efddd644405f04cde73e30a2e381737acce9f5add30000000000000000000000006887246668a3b87f54deb3b94ba47a6f63f329850000abcd000000000000dcba"
        );
        let info = L1InfoIsthmus::decode(&raw).unwrap();
        assert_eq!((info.base_fee_scalar, info.blob_base_fee_scalar), (1368, 810_949));
        assert_eq!((info.sequence_number, info.l1_timestamp, info.l1_number), (5, 1_713_121_139, 19_655_712));
        assert_eq!((info.l1_base_fee, info.l1_blob_base_fee), (U256::from(10_445_852_825u64), U256::from(1)));
        assert_eq!(info.batcher(), address!("6887246668a3b87f54deb3b94ba47a6f63f32985"));
        assert_eq!((info.operator_fee_scalar, info.operator_fee_constant), (0xabcd, 0xdcba));
        assert_eq!(info.calldata(), raw);
    }

    #[test]
    fn calldata_that_is_not_isthmus_l1_info_is_refused() {
        let good = L1InfoIsthmus::new(
            &L1Block {
                number: 1,
                hash: B256::repeat_byte(1),
                parent_hash: B256::ZERO,
                timestamp: 2,
                base_fee_per_gas: 3,
                excess_blob_gas: None,
                blob_gas_used: None,
                mix_hash: B256::ZERO,
                parent_beacon_block_root: None,
            },
            0,
            &SystemConfigValues {
                batcher: Address::repeat_byte(9),
                base_fee_scalar: 1,
                blob_base_fee_scalar: 2,
                operator_fee_scalar: 3,
                operator_fee_constant: 4,
            },
            BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE,
        );
        assert_eq!(good.l1_blob_base_fee, U256::from(1), "no blob fields: the minimum");
        let calldata = good.calldata();
        assert_eq!(L1InfoIsthmus::decode(&calldata[..164]), Err(L1InfoError::Length(164)));
        let mut ecotone = calldata;
        ecotone[..4].copy_from_slice(&[0x44, 0x0a, 0x5e, 0x20]);
        assert_eq!(L1InfoIsthmus::decode(&ecotone), Err(L1InfoError::Selector([0x44, 0x0a, 0x5e, 0x20])));
        let mut padded = calldata;
        padded[132] = 1;
        assert!(matches!(L1InfoIsthmus::decode(&padded), Err(L1InfoError::BatcherHash(_))));
        assert_eq!(good.deposit().source_hash, l1_info_source_hash(B256::repeat_byte(1), 0));
        assert_ne!(l1_info_source_hash(B256::repeat_byte(1), 0), l1_info_source_hash(B256::repeat_byte(1), 1));
    }

    #[test]
    fn system_config_scalars_follow_the_versioned_encoding() {
        // The devnet's genesis scalar (testdata/op/420110017-rollup.json).
        let devnet = b256!("010000000000000000000000000000000000000000000000000c5fc500000558");
        assert_eq!(decode_scalar(devnet), Ok((1368, 810_949)));
        let bedrock = b256!("00000000000000000000000000000000000000000000000000000000000f4240");
        assert_eq!(decode_scalar(bedrock), Ok((1_000_000, 0)));
        let dirty_bedrock = b256!("00000000000000000000000000000000000000000000000000000001000f4240");
        assert_eq!(decode_scalar(dirty_bedrock), Ok((u32::MAX, 0)));
        let dirty_ecotone = b256!("010000000000000000000000000000000000000000000100000c5fc500000558");
        assert_eq!(decode_scalar(dirty_ecotone), Err(SystemConfigError::EcotoneScalarPadding(dirty_ecotone)));
        let mut unknown = devnet;
        unknown.0[0] = 2;
        assert_eq!(decode_scalar(unknown), Err(SystemConfigError::UnknownScalarVersion(unknown, 2)));
        let params = b256!("0000000000000000000000000000000000000000000abcde000000000000f00d");
        assert_eq!(decode_operator_fee_params(params), (0xabcde, 0xf00d));
    }

    #[test]
    fn the_devnet_genesis_system_config_reads() {
        let rollup =
            tephra_types::rollup::RollupConfig::from_json(include_str!("../../testdata/op/420110017-rollup.json"))
                .unwrap();
        let values = SystemConfigValues::from_genesis(&rollup.genesis.system_config).unwrap();
        assert_eq!(
            values,
            SystemConfigValues {
                batcher: address!("b531b79a1a62331fb7fe2c3b9f3b313f26a57e4d"),
                base_fee_scalar: 1368,
                blob_base_fee_scalar: 810_949,
                operator_fee_scalar: 0,
                operator_fee_constant: 0,
            }
        );
    }
}
