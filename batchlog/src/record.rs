//! The records and their payload encoding: little-endian integers, fixed
//! fields as they are, variable bytes and lists behind a u32 length or count.

use alloy_consensus::{Eip658Value, Receipt};
use alloy_primitives::{Address, B256, Bytes, Log, LogData};

use crate::{LogError, RECORD_SIZE_MAX_BYTES};

/// The most topics a log holds: the EVM's LOG0 to LOG4.
const TOPICS_MAX: usize = 4;

/// A block's parameters, as chosen when it opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenRecord {
    pub number: u64,
    pub parent_hash: B256,
    pub timestamp: u64,
    pub beneficiary: Address,
    pub prevrandao: B256,
    pub extra_data: Bytes,
    pub gas_limit: u64,
    pub base_fee_per_gas: u64,
    /// An OP Stack block's: its L1 origin and deposits.
    pub op: Option<OpOpenRecord>,
}

/// What an OP Stack block takes from L1 when it opens, so that replay
/// rebuilds it with no L1 at hand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpOpenRecord {
    pub origin: L1OriginRecord,
    /// L2 blocks since the epoch began: 0 in its first block.
    pub sequence_number: u64,
    /// SystemConfig's EIP-1559 parameters the block was built with.
    pub eip1559_params: [u8; 8],
    /// Past the sequencer drift: the block takes no user transactions.
    pub deposits_only: bool,
    /// The block's deposits in order, EIP-2718 encoded (0x7E), the L1-info
    /// deposit first.
    pub deposits: Vec<Bytes>,
}

/// An L1 block header, the fields an L2 block takes from its origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L1OriginRecord {
    pub number: u64,
    pub hash: B256,
    pub parent_hash: B256,
    pub timestamp: u64,
    pub base_fee_per_gas: u64,
    pub excess_blob_gas: Option<u64>,
    pub blob_gas_used: Option<u64>,
    pub mix_hash: B256,
    pub parent_beacon_block_root: Option<B256>,
}

/// One transaction's receipt as the log keeps it (the bloom is derived).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptRecord {
    pub success: bool,
    pub cumulative_gas_used: u64,
    pub logs: Vec<Log>,
    /// A deposit's: the sender's nonce before it (its receipt's depositNonce).
    pub deposit_nonce: Option<u64>,
}

impl From<&Receipt<Log>> for ReceiptRecord {
    fn from(receipt: &Receipt<Log>) -> Self {
        Self {
            success: receipt.status.coerce_status(),
            cumulative_gas_used: receipt.cumulative_gas_used,
            logs: receipt.logs.clone(),
            deposit_nonce: None,
        }
    }
}

impl ReceiptRecord {
    /// The receipt this record keeps (post-Byzantium: a status, not a root).
    pub fn into_receipt(self) -> Receipt<Log> {
        Receipt {
            status: Eip658Value::Eip658(self.success),
            cumulative_gas_used: self.cumulative_gas_used,
            logs: self.logs,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A block opened.
    Open(OpenRecord),
    /// A mini-block: the transactions included, in order, with their senders.
    Batch { number: u64, txs: Vec<(Address, Bytes)> },
    /// The block sealed: its RLP header and its receipts, in order.
    Sealed { number: u64, header_rlp: Bytes, receipts: Vec<ReceiptRecord> },
    /// The block's signature by the block key.
    Signed { number: u64, hash: B256, signature: [u8; 65] },
    /// A leader of a high-availability pair took over: the records after
    /// this one are its, and the block open now or next carries its epoch.
    Epoch { epoch: u64 },
    /// The blocks above `number` (whose hash is `hash`) are abandoned: an
    /// OP Stack chain's L1 reorged below their L1 origins. The records of
    /// blocks above `number` before this one are not the chain's any more;
    /// the block after `number` opens again after it.
    Rewind { number: u64, hash: B256 },
}

/// Why a payload is not a record. The messages read as the log's warnings
/// and refusals always have.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("needs {needed} more bytes, {left} left")]
    Truncated { needed: usize, left: usize },
    #[error("count {count} exceeds the record")]
    CountExceedsRecord { count: usize },
    #[error("{0} topics")]
    TooManyTopics(u8),
    #[error("unknown record tag {0}")]
    UnknownTag(u8),
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
    #[error("flag byte {0}, not 0 or 1")]
    Flag(u8),
    #[error("receipt flags {0:#04x}")]
    ReceiptFlags(u8),
}

/// A Batch payload's fixed part: tag, block number, transaction count.
const BATCH_FIXED_BYTES: u64 = 1 + 8 + 4;
/// A Batch payload's bytes per transaction besides the transaction: its
/// sender and its length.
const BATCH_TX_OVERHEAD_BYTES: u64 = 20 + 4;

/// The largest Batch payload `encode` writes for a mini-block of at most
/// `txs` transactions of at most `tx_size_max_bytes` each. The node's config
/// asserts at compile time that its largest mini-block fits
/// `RECORD_SIZE_MAX_BYTES`.
pub const fn batch_record_bytes_max(txs: u64, tx_size_max_bytes: u64) -> u64 {
    BATCH_FIXED_BYTES.saturating_add(txs.saturating_mul(BATCH_TX_OVERHEAD_BYTES.saturating_add(tx_size_max_bytes)))
}

/// The largest header RLP a Sealed record holds: every field up to Amsterdam
/// at its widest, with 32 bytes of extraData, is 760 bytes (tested in the
/// node's config, which has the RLP encoder); the rest is room for a fork's
/// new fields.
pub const HEADER_RLP_MAX_BYTES: u64 = 1024;
/// A Sealed payload's fixed part: tag, block number, header length, the
/// header, receipt count.
const SEALED_FIXED_BYTES: u64 = 1 + 8 + 4 + HEADER_RLP_MAX_BYTES + 4;
/// A receipt's bytes besides its logs at most: status, a deposit's nonce,
/// cumulative gas, log count.
const RECEIPT_FIXED_BYTES: u64 = 1 + 8 + 8 + 4;
/// The least gas a transaction executes: its intrinsic gas.
const TX_GAS_MIN: u64 = 21_000;

/// An upper bound of the Sealed payload `encode` writes for a block of
/// `block_gas_limit`, its header within `HEADER_RLP_MAX_BYTES`.
///
/// What a block executes is bounded by its gas limit: the gas its
/// transactions use adds up to at most the limit, and a refund returns at
/// most half of what a transaction executed (a fifth since London), so the
/// block executes at most twice its limit. Each transaction executes at least
/// `TX_GAS_MIN` and has a receipt of `RECEIPT_FIXED_BYTES`. A log costs 375
/// gas, 375 per topic and 8 per data byte, and takes 20 + 1 + 4 bytes, 32 per
/// topic and 1 per data byte: at most a byte per 8 gas. Counting both from
/// all the gas over-counts, which a bound may.
pub const fn sealed_record_bytes_max(block_gas_limit: u64) -> u64 {
    // Twice the limit over TX_GAS_MIN and over 8, without overflowing.
    let receipts = block_gas_limit / (TX_GAS_MIN / 2);
    let log_bytes = block_gas_limit / 4;
    SEALED_FIXED_BYTES.saturating_add(receipts.saturating_mul(RECEIPT_FIXED_BYTES)).saturating_add(log_bytes)
}

/// A payload's length as a frame header holds it, or the refusal of a
/// record above the limit. The one check of a record's size: `encode`
/// refuses with it and `frame` takes its header's length from it.
pub(crate) fn payload_len(bytes: usize) -> Result<u32, LogError> {
    let too_large = LogError::RecordTooLarge { bytes, max_bytes: RECORD_SIZE_MAX_BYTES };
    if bytes > RECORD_SIZE_MAX_BYTES {
        return Err(too_large);
    }
    u32::try_from(bytes).map_err(|_| too_large)
}

struct Enc(Vec<u8>);

impl Enc {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// A length or a count. One of 4 GiB or more saturates, unseen: it is
    /// followed by at least that many bytes, so the payload is over
    /// `RECORD_SIZE_MAX_BYTES` and `encode` refuses it.
    fn count(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    fn bytes(&mut self, v: &[u8]) {
        self.count(v.len());
        self.0.extend_from_slice(v);
    }
    fn fixed(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    fn optional_u64(&mut self, v: Option<u64>) {
        self.u8(u8::from(v.is_some()));
        self.u64(v.unwrap_or(0));
    }
}

/// Bounds-checked reads: every length is checked against what is left.
struct Dec<'a>(&'a [u8]);

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated { needed: n, left: self.0.len() });
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn b256(&mut self) -> Result<B256, DecodeError> {
        Ok(B256::from_slice(self.take(32)?))
    }
    fn address(&mut self) -> Result<Address, DecodeError> {
        Ok(Address::from_slice(self.take(20)?))
    }
    fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(DecodeError::Flag(other)),
        }
    }
    fn optional_u64(&mut self) -> Result<Option<u64>, DecodeError> {
        let present = self.flag()?;
        let value = self.u64()?;
        Ok(present.then_some(value))
    }
    fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u32()? as usize;
        Ok(Bytes::copy_from_slice(self.take(len)?))
    }
    /// A count of items each at least `item_min_bytes` long, checked against what is left.
    fn count(&mut self, item_min_bytes: usize) -> Result<usize, DecodeError> {
        let count = self.u32()? as usize;
        if count.saturating_mul(item_min_bytes) > self.0.len() {
            return Err(DecodeError::CountExceedsRecord { count });
        }
        Ok(count)
    }
}

impl Record {
    /// The payload, or why the record cannot be logged: larger than
    /// `RECORD_SIZE_MAX_BYTES`, or a log of more topics than the EVM emits
    /// (the decoder would refuse it).
    pub fn encode(&self) -> Result<Vec<u8>, LogError> {
        let mut e = Enc(Vec::with_capacity(256));
        match self {
            Record::Open(o) => {
                // Tag 6: an OP Stack block's, the OP part after the rest.
                e.u8(if o.op.is_some() { 6 } else { 1 });
                e.u64(o.number);
                e.fixed(o.parent_hash.as_slice());
                e.u64(o.timestamp);
                e.fixed(o.beneficiary.as_slice());
                e.fixed(o.prevrandao.as_slice());
                e.bytes(&o.extra_data);
                e.u64(o.gas_limit);
                e.u64(o.base_fee_per_gas);
                if let Some(op) = &o.op {
                    encode_op_open(&mut e, op);
                }
            }
            Record::Batch { number, txs } => {
                e.u8(2);
                e.u64(*number);
                e.count(txs.len());
                for (sender, raw) in txs {
                    e.fixed(sender.as_slice());
                    e.bytes(raw);
                }
            }
            Record::Sealed { number, header_rlp, receipts } => {
                e.u8(3);
                e.u64(*number);
                e.bytes(header_rlp);
                e.count(receipts.len());
                for receipt in receipts {
                    encode_receipt(&mut e, receipt)?;
                }
            }
            Record::Signed { number, hash, signature } => {
                e.u8(4);
                e.u64(*number);
                e.fixed(hash.as_slice());
                e.fixed(signature);
            }
            Record::Epoch { epoch } => {
                e.u8(5);
                e.u64(*epoch);
            }
            Record::Rewind { number, hash } => {
                e.u8(7);
                e.u64(*number);
                e.fixed(hash.as_slice());
            }
        }
        payload_len(e.0.len())?;
        Ok(e.0)
    }

    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Dec(payload);
        let record = match d.u8()? {
            tag @ (1 | 6) => Record::Open(OpenRecord {
                number: d.u64()?,
                parent_hash: d.b256()?,
                timestamp: d.u64()?,
                beneficiary: d.address()?,
                prevrandao: d.b256()?,
                extra_data: d.bytes()?,
                gas_limit: d.u64()?,
                base_fee_per_gas: d.u64()?,
                op: if tag == 6 { Some(decode_op_open(&mut d)?) } else { None },
            }),
            2 => {
                let number = d.u64()?;
                let n = d.count(24)?;
                let mut txs = Vec::with_capacity(n);
                for _ in 0..n {
                    txs.push((d.address()?, d.bytes()?));
                }
                Record::Batch { number, txs }
            }
            3 => {
                let number = d.u64()?;
                let header_rlp = d.bytes()?;
                let n = d.count(13)?;
                let mut receipts = Vec::with_capacity(n);
                for _ in 0..n {
                    receipts.push(decode_receipt(&mut d)?);
                }
                Record::Sealed { number, header_rlp, receipts }
            }
            4 => Record::Signed { number: d.u64()?, hash: d.b256()?, signature: d.array()? },
            5 => Record::Epoch { epoch: d.u64()? },
            7 => Record::Rewind { number: d.u64()?, hash: d.b256()? },
            tag => return Err(DecodeError::UnknownTag(tag)),
        };
        if !d.0.is_empty() {
            return Err(DecodeError::TrailingBytes(d.0.len()));
        }
        Ok(record)
    }
}

/// A receipt's first byte: bit 0 its status, bit 1 a deposit nonce follows.
const RECEIPT_DEPOSIT_NONCE_BIT: u8 = 2;

fn encode_receipt(e: &mut Enc, receipt: &ReceiptRecord) -> Result<(), LogError> {
    let nonce_bit = if receipt.deposit_nonce.is_some() { RECEIPT_DEPOSIT_NONCE_BIT } else { 0 };
    e.u8(u8::from(receipt.success) | nonce_bit);
    if let Some(nonce) = receipt.deposit_nonce {
        e.u64(nonce);
    }
    e.u64(receipt.cumulative_gas_used);
    e.count(receipt.logs.len());
    for log in &receipt.logs {
        let topics = log.topics();
        // Checked here, so the count fits its byte.
        let topic_count = u8::try_from(topics.len())
            .ok()
            .filter(|&count| usize::from(count) <= TOPICS_MAX)
            .ok_or(LogError::TooManyTopics { topics: topics.len() })?;
        e.fixed(log.address.as_slice());
        e.u8(topic_count);
        for topic in topics {
            e.fixed(topic.as_slice());
        }
        e.bytes(&log.data.data);
    }
    Ok(())
}

fn decode_receipt(d: &mut Dec<'_>) -> Result<ReceiptRecord, DecodeError> {
    let first = d.u8()?;
    if first & !(1 | RECEIPT_DEPOSIT_NONCE_BIT) != 0 {
        return Err(DecodeError::ReceiptFlags(first));
    }
    let success = first & 1 != 0;
    let deposit_nonce = if first & RECEIPT_DEPOSIT_NONCE_BIT != 0 { Some(d.u64()?) } else { None };
    let cumulative_gas_used = d.u64()?;
    let log_count = d.count(25)?;
    let mut logs = Vec::with_capacity(log_count);
    for _ in 0..log_count {
        let address = d.address()?;
        let topic_count = d.u8()?;
        if usize::from(topic_count) > TOPICS_MAX {
            return Err(DecodeError::TooManyTopics(topic_count));
        }
        let topics = (0..topic_count).map(|_| d.b256()).collect::<Result<Vec<_>, _>>()?;
        let data = d.bytes()?;
        logs.push(Log { address, data: LogData::new_unchecked(topics, data) });
    }
    Ok(ReceiptRecord { success, cumulative_gas_used, logs, deposit_nonce })
}

fn encode_op_open(e: &mut Enc, op: &OpOpenRecord) {
    let o = &op.origin;
    e.u64(o.number);
    e.fixed(o.hash.as_slice());
    e.fixed(o.parent_hash.as_slice());
    e.u64(o.timestamp);
    e.u64(o.base_fee_per_gas);
    e.optional_u64(o.excess_blob_gas);
    e.optional_u64(o.blob_gas_used);
    e.fixed(o.mix_hash.as_slice());
    e.u8(u8::from(o.parent_beacon_block_root.is_some()));
    e.fixed(o.parent_beacon_block_root.unwrap_or_default().as_slice());
    e.u64(op.sequence_number);
    e.fixed(&op.eip1559_params);
    e.u8(u8::from(op.deposits_only));
    e.count(op.deposits.len());
    for deposit in &op.deposits {
        e.bytes(deposit);
    }
}

fn decode_op_open(d: &mut Dec<'_>) -> Result<OpOpenRecord, DecodeError> {
    let origin = L1OriginRecord {
        number: d.u64()?,
        hash: d.b256()?,
        parent_hash: d.b256()?,
        timestamp: d.u64()?,
        base_fee_per_gas: d.u64()?,
        excess_blob_gas: d.optional_u64()?,
        blob_gas_used: d.optional_u64()?,
        mix_hash: d.b256()?,
        parent_beacon_block_root: {
            let present = d.flag()?;
            let root = d.b256()?;
            present.then_some(root)
        },
    };
    let sequence_number = d.u64()?;
    let eip1559_params = d.array()?;
    let deposits_only = d.flag()?;
    let n = d.count(4)?;
    let mut deposits = Vec::with_capacity(n);
    for _ in 0..n {
        deposits.push(d.bytes()?);
    }
    Ok(OpOpenRecord { origin, sequence_number, eip1559_params, deposits_only, deposits })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::samples;

    #[test]
    fn decoding_arbitrary_bytes_never_panics() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for record in samples() {
            let encoded = record.encode().unwrap();
            for len in 0..encoded.len() {
                let _ = Record::decode(&encoded[..len]);
            }
            for _ in 0..2_000 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let mut mutated = encoded.clone();
                let i = usize::try_from(seed % mutated.len() as u64).expect("below the length");
                mutated[i] = seed.to_le_bytes()[4];
                let _ = Record::decode(&mutated);
            }
        }
    }

    #[test]
    fn every_record_survives_encoding() {
        for record in samples().into_iter().chain(crate::fixtures::op_samples()) {
            assert_eq!(Record::decode(&record.encode().unwrap()), Ok(record));
        }
    }

    #[test]
    fn op_records_survive_any_cut_or_change_without_a_panic() {
        for record in crate::fixtures::op_samples() {
            let encoded = record.encode().unwrap();
            for len in 0..encoded.len() {
                assert!(Record::decode(&encoded[..len]).is_err(), "a cut at {len} decodes");
            }
            for i in 0..encoded.len() {
                let mut mutated = encoded.clone();
                mutated[i] ^= 0x5a;
                let _ = Record::decode(&mutated);
            }
        }
    }

    #[test]
    fn a_receipt_survives_its_record() {
        let Record::Sealed { receipts, .. } = &samples()[2] else { panic!("the third sample is a seal") };
        for success in [true, false] {
            let record = ReceiptRecord { success, ..receipts[0].clone() };
            let receipt = record.clone().into_receipt();
            assert_eq!(receipt.status, Eip658Value::Eip658(success));
            assert_eq!(ReceiptRecord::from(&receipt), record);
        }
    }

    #[test]
    fn the_largest_batch_is_as_long_as_its_bound() {
        for (txs, tx_bytes) in [(0_usize, 0_usize), (1, 0), (3, 100), (16, 4096)] {
            let record = Record::Batch {
                number: u64::MAX,
                txs: (0..txs).map(|_| (Address::ZERO, Bytes::from(vec![0xab; tx_bytes]))).collect(),
            };
            let bound = batch_record_bytes_max(txs as u64, tx_bytes as u64);
            assert_eq!(record.encode().unwrap().len() as u64, bound, "{txs} transactions of {tx_bytes} bytes");
        }
    }

    /// A block of logs only, each as long as its share of the gas allows,
    /// stays within the bound.
    #[test]
    fn a_sealed_record_of_its_gas_in_logs_stays_within_its_bound() {
        // One transaction's gas in logs: 21,000 intrinsic, the rest in LOG1s of
        // 1,000 data bytes (375 + 375 + 8,000 gas each).
        let gas_limit: u64 = 30_000_000;
        let log =
            Log { address: Address::ZERO, data: LogData::new_unchecked(vec![B256::ZERO], Bytes::from(vec![0; 1_000])) };
        let logs = usize::try_from((gas_limit - 21_000) / (375 + 375 + 8 * 1_000)).unwrap();
        let receipt =
            ReceiptRecord { success: true, cumulative_gas_used: gas_limit, logs: vec![log; logs], deposit_nonce: None };
        let record = Record::Sealed {
            number: 1,
            header_rlp: Bytes::from(vec![0; usize::try_from(HEADER_RLP_MAX_BYTES).unwrap()]),
            receipts: vec![receipt],
        };
        let bytes = record.encode().unwrap().len() as u64;
        assert!(bytes <= sealed_record_bytes_max(gas_limit), "{bytes}");
        // Transfers only: a receipt per 21,000 gas.
        let transfers = usize::try_from(gas_limit / 21_000).unwrap();
        let receipt =
            ReceiptRecord { success: true, cumulative_gas_used: gas_limit, logs: Vec::new(), deposit_nonce: Some(1) };
        let record = Record::Sealed { number: 1, header_rlp: Bytes::new(), receipts: vec![receipt; transfers] };
        assert!(record.encode().unwrap().len() as u64 <= sealed_record_bytes_max(gas_limit));
    }

    #[test]
    fn the_sealed_bound_grows_with_the_gas_and_saturates() {
        assert!(sealed_record_bytes_max(30_000_000) < RECORD_SIZE_MAX_BYTES as u64);
        assert!(sealed_record_bytes_max(1 << 40) > RECORD_SIZE_MAX_BYTES as u64);
        assert!(sealed_record_bytes_max(0) < sealed_record_bytes_max(30_000_000));
        assert!(sealed_record_bytes_max(u64::MAX) >= u64::MAX / 4);
    }

    /// The decoder refuses a log of more than 4 topics, so the encoder never
    /// writes one, not even from 256 topics (which would not fit the count's byte).
    #[test]
    fn a_log_of_more_topics_than_the_evm_emits_is_refused() {
        for topics in [5, 256] {
            let log =
                Log { address: Address::ZERO, data: LogData::new_unchecked(vec![B256::ZERO; topics], Bytes::new()) };
            let receipt = ReceiptRecord { success: true, cumulative_gas_used: 1, logs: vec![log], deposit_nonce: None };
            let record = Record::Sealed { number: 1, header_rlp: Bytes::new(), receipts: vec![receipt] };
            assert!(matches!(record.encode(), Err(LogError::TooManyTopics { topics: t }) if t == topics));
            assert!(matches!(record.frame(), Err(LogError::TooManyTopics { .. })));
        }
    }
}
