//! Span batches (batch type 1; specs: delta/span-batches.md, and Isthmus's
//! type-4 transactions): a run of consecutive L2 blocks in one batch, each
//! transaction split into columns (creation bits, y-parity bits,
//! signatures, recipients, the rest of the fields, nonces, gas limits,
//! EIP-155 protection bits) so that the channel compresses them well.
//!
//! ```text
//!  body = uvarint(first timestamp - genesis l2_time) ‖ uvarint(last origin number)
//!       ‖ first parent hash[..20] ‖ last origin hash[..20]
//!       ‖ uvarint(blocks) ‖ bits(origin changed) ‖ uvarint(txs) per block
//!       ‖ bits(creation) ‖ bits(y parity) ‖ (r ‖ s) per tx ‖ to per call ‖ tx_data per tx
//!       ‖ uvarint(nonce) per tx ‖ uvarint(gas) per tx ‖ bits(protected) per legacy tx
//! ```
//!
//! `bits(k)` is a big-endian integer of `ceil(k / 8)` bytes whose bit `i` is
//! element `i`'s; a set bit at or past `k` is refused, as are counts over
//! `SPAN_BATCH_ELEMENTS_MAX`, trailing bytes and a blob transaction (which
//! no batch may hold). Deposits are not batched: a block holds its user
//! transactions only, and a block of deposits only is a block of none.

use alloy_consensus::{Transaction, TxEnvelope};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{Address, B256, Bytes};
use alloy_rlp::{Encodable, Header};

/// The batch type byte of a span batch.
pub const SPAN_BATCH_TYPE: u8 = 1;

/// The most blocks, transactions in a block, and transactions in all, a
/// span batch may hold (Fjord's `MAX_SPAN_BATCH_ELEMENT_COUNT`).
pub const SPAN_BATCH_ELEMENTS_MAX: u64 = 10_000_000;

/// What a span batch says of one sealed block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchBlock {
    pub timestamp: u64,
    pub parent_hash: B256,
    pub origin_number: u64,
    pub origin_hash: B256,
    /// L2 blocks since the epoch began: 0 in its first block.
    pub sequence_number: u64,
    /// The block's user transactions (EIP-2718), deposits left out.
    pub txs: Vec<Bytes>,
}

/// A span batch's fields as they are on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawSpanBatch {
    pub rel_timestamp: u64,
    pub l1_origin_num: u64,
    pub parent_check: [u8; 20],
    pub l1_origin_check: [u8; 20],
    /// Per block: its L1 origin is a new epoch's.
    pub origin_bits: Vec<bool>,
    pub block_tx_counts: Vec<u64>,
    pub txs: SpanBatchTxs,
}

/// The transactions' columns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpanBatchTxs {
    pub contract_creation_bits: Vec<bool>,
    pub y_parity_bits: Vec<bool>,
    pub signatures: Vec<([u8; 32], [u8; 32])>,
    /// The recipients of the transactions that are not creations, in order.
    pub tos: Vec<Address>,
    /// Each transaction's remaining fields: legacy `rlp([value, gasPrice,
    /// data])`; typed `type ‖ rlp([value, fees..., data, accessList(,
    /// authorizationList)])`.
    pub datas: Vec<Bytes>,
    pub nonces: Vec<u64>,
    pub gases: Vec<u64>,
    /// Per legacy transaction: signed with EIP-155 replay protection.
    pub protected_bits: Vec<bool>,
}

/// Why blocks make no span batch, or bytes are not one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpanBatchError {
    #[error("a span batch of no blocks")]
    NoBlocks,
    #[error("block {index} starts before the rollup's genesis")]
    BeforeGenesis { index: usize },
    #[error("transaction {index} of block {block}: {reason}")]
    Transaction { block: usize, index: usize, reason: String },
    #[error("{what}: {count}, above {SPAN_BATCH_ELEMENTS_MAX}")]
    TooMany { what: &'static str, count: u64 },
    #[error("cut short reading {0}")]
    Truncated(&'static str),
    #[error("{0}: a varint over 64 bits")]
    Varint(&'static str),
    #[error("{0}: a bit set past its count")]
    Bits(&'static str),
    #[error("tx_data {index}: {reason}")]
    TxData { index: usize, reason: String },
    #[error("{0} trailing bytes")]
    Trailing(usize),
}

impl RawSpanBatch {
    /// The span batch of `blocks` (consecutive, oldest first) of a rollup
    /// whose genesis L2 time is `genesis_l2_time`.
    pub fn from_blocks(genesis_l2_time: u64, blocks: &[BatchBlock]) -> Result<Self, SpanBatchError> {
        let (first, last) = (blocks.first().ok_or(SpanBatchError::NoBlocks)?, blocks.last().expect("not empty"));
        let rel_timestamp =
            first.timestamp.checked_sub(genesis_l2_time).ok_or(SpanBatchError::BeforeGenesis { index: 0 })?;
        let mut batch = Self {
            rel_timestamp,
            l1_origin_num: last.origin_number,
            parent_check: first.parent_hash[..20].try_into().expect("20 bytes"),
            l1_origin_check: last.origin_hash[..20].try_into().expect("20 bytes"),
            ..Self::default()
        };
        for (i, block) in blocks.iter().enumerate() {
            let new_epoch = match i {
                0 => block.sequence_number == 0,
                _ => block.origin_number > blocks[i - 1].origin_number,
            };
            batch.origin_bits.push(new_epoch);
            batch.block_tx_counts.push(block.txs.len() as u64);
            for (index, raw) in block.txs.iter().enumerate() {
                batch.txs.push(raw).map_err(|reason| SpanBatchError::Transaction { block: i, index, reason })?;
            }
        }
        batch.check_counts()?;
        Ok(batch)
    }

    fn check_counts(&self) -> Result<(), SpanBatchError> {
        let too_many =
            |what, count| (count > SPAN_BATCH_ELEMENTS_MAX).then_some(SpanBatchError::TooMany { what, count });
        let total = self.block_tx_counts.iter().fold(0u64, |sum, count| sum.saturating_add(*count));
        let worst = self.block_tx_counts.iter().copied().max().unwrap_or(0);
        match too_many("blocks", self.origin_bits.len() as u64)
            .or(too_many("transactions in a block", worst))
            .or(too_many("transactions", total))
        {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// The batch as a channel holds it (inside its RLP string): the type
    /// byte, then the body.
    pub fn batch_bytes(&self) -> Vec<u8> {
        let mut out = vec![SPAN_BATCH_TYPE];
        self.encode_into(&mut out);
        out
    }

    /// The body, appended to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_uvarint(out, self.rel_timestamp);
        put_uvarint(out, self.l1_origin_num);
        out.extend_from_slice(&self.parent_check);
        out.extend_from_slice(&self.l1_origin_check);
        put_uvarint(out, self.origin_bits.len() as u64);
        put_bits(out, &self.origin_bits);
        for count in &self.block_tx_counts {
            put_uvarint(out, *count);
        }
        let txs = &self.txs;
        put_bits(out, &txs.contract_creation_bits);
        put_bits(out, &txs.y_parity_bits);
        for (r, s) in &txs.signatures {
            out.extend_from_slice(r);
            out.extend_from_slice(s);
        }
        for to in &txs.tos {
            out.extend_from_slice(to.as_slice());
        }
        for data in &txs.datas {
            out.extend_from_slice(data);
        }
        for nonce in &txs.nonces {
            put_uvarint(out, *nonce);
        }
        for gas in &txs.gases {
            put_uvarint(out, *gas);
        }
        put_bits(out, &txs.protected_bits);
    }

    /// A body (no type byte); see the module comment.
    pub fn decode(body: &[u8]) -> Result<Self, SpanBatchError> {
        let mut r = Reader(body);
        let mut batch = Self {
            rel_timestamp: r.uvarint("rel_timestamp")?,
            l1_origin_num: r.uvarint("l1_origin_num")?,
            parent_check: r.array("parent_check")?,
            l1_origin_check: r.array("l1_origin_check")?,
            ..Self::default()
        };
        let blocks = r.count("block_count")?;
        if blocks == 0 {
            // op-node and kona refuse it (and drop the rest of its channel).
            return Err(SpanBatchError::NoBlocks);
        }
        batch.origin_bits = r.bits(blocks, "origin_bits")?;
        for _ in 0..blocks {
            let count = r.count("block_tx_counts")?;
            batch.block_tx_counts.push(count as u64);
        }
        batch.check_counts()?;
        let total =
            usize::try_from(batch.block_tx_counts.iter().sum::<u64>()).expect("at most the element limit, checked");
        let txs = &mut batch.txs;
        txs.contract_creation_bits = r.bits(total, "contract_creation_bits")?;
        txs.y_parity_bits = r.bits(total, "y_parity_bits")?;
        for _ in 0..total {
            txs.signatures.push((r.array("tx_sigs")?, r.array("tx_sigs")?));
        }
        for _ in txs.contract_creation_bits.iter().filter(|creation| !**creation) {
            txs.tos.push(Address::from(r.array::<20>("tx_tos")?));
        }
        let mut legacy = 0;
        for index in 0..total {
            let data = r.tx_data(index)?;
            legacy += usize::from(data.first().is_some_and(|b| *b >= 0xc0));
            txs.datas.push(data);
        }
        for _ in 0..total {
            txs.nonces.push(r.uvarint("tx_nonces")?);
        }
        for _ in 0..total {
            txs.gases.push(r.uvarint("tx_gases")?);
        }
        txs.protected_bits = r.bits(legacy, "protected_bits")?;
        match r.0.len() {
            0 => Ok(batch),
            n => Err(SpanBatchError::Trailing(n)),
        }
    }
}

impl SpanBatchTxs {
    /// Adds one transaction's columns.
    fn push(&mut self, raw: &[u8]) -> Result<(), String> {
        let envelope = TxEnvelope::decode_2718_exact(raw).map_err(|e| e.to_string())?;
        let signature = *envelope.signature();
        let mut data = Vec::new();
        match &envelope {
            TxEnvelope::Legacy(signed) => {
                let tx = signed.tx();
                rlp_list(&mut data, &[&tx.value, &tx.gas_price, &tx.input]);
                self.protected_bits.push(tx.chain_id.is_some());
            }
            TxEnvelope::Eip2930(signed) => {
                let tx = signed.tx();
                data.push(1);
                rlp_list(&mut data, &[&tx.value, &tx.gas_price, &tx.input, &tx.access_list]);
            }
            TxEnvelope::Eip1559(signed) => {
                let tx = signed.tx();
                data.push(2);
                let fees: [&dyn Encodable; 5] =
                    [&tx.value, &tx.max_priority_fee_per_gas, &tx.max_fee_per_gas, &tx.input, &tx.access_list];
                rlp_list(&mut data, &fees);
            }
            TxEnvelope::Eip7702(signed) => {
                let tx = signed.tx();
                data.push(4);
                let fields: [&dyn Encodable; 6] = [
                    &tx.value,
                    &tx.max_priority_fee_per_gas,
                    &tx.max_fee_per_gas,
                    &tx.input,
                    &tx.access_list,
                    &tx.authorization_list,
                ];
                rlp_list(&mut data, &fields);
            }
            TxEnvelope::Eip4844(_) => return Err("a blob transaction: no batch holds one".into()),
        }
        let to = envelope.to();
        self.contract_creation_bits.push(to.is_none());
        self.y_parity_bits.push(signature.v());
        self.signatures.push((signature.r().to_be_bytes(), signature.s().to_be_bytes()));
        self.tos.extend(to);
        self.datas.push(data.into());
        self.nonces.push(envelope.nonce());
        self.gases.push(envelope.gas_limit());
        Ok(())
    }
}

fn rlp_list(out: &mut Vec<u8>, fields: &[&dyn Encodable]) {
    let payload_length = fields.iter().map(|f| f.length()).sum();
    Header { list: true, payload_length }.encode(out);
    for field in fields {
        field.encode(out);
    }
}

fn put_uvarint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(u8::try_from(value & 0x7f).expect("7 bits") | 0x80);
        value >>= 7;
    }
    out.push(u8::try_from(value).expect("below 0x80"));
}

fn put_bits(out: &mut Vec<u8>, bits: &[bool]) {
    let len = bits.len().div_ceil(8);
    let start = out.len();
    out.resize(start + len, 0);
    for (i, _) in bits.iter().enumerate().filter(|(_, bit)| **bit) {
        out[start + len - 1 - i / 8] |= 1 << (i % 8);
    }
}

/// Bounds-checked reads of a body.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], SpanBatchError> {
        if self.0.len() < n {
            return Err(SpanBatchError::Truncated(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], SpanBatchError> {
        Ok(self.take(N, what)?.try_into().expect("N bytes"))
    }

    fn uvarint(&mut self, what: &'static str) -> Result<u64, SpanBatchError> {
        let mut value = 0u64;
        for i in 0..10 {
            let byte = *self.take(1, what)?.first().expect("one byte");
            if i == 9 && byte > 1 {
                return Err(SpanBatchError::Varint(what));
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(SpanBatchError::Varint(what))
    }

    fn count(&mut self, what: &'static str) -> Result<usize, SpanBatchError> {
        let count = self.uvarint(what)?;
        if count > SPAN_BATCH_ELEMENTS_MAX {
            return Err(SpanBatchError::TooMany { what, count });
        }
        Ok(usize::try_from(count).expect("below the element limit"))
    }

    fn bits(&mut self, count: usize, what: &'static str) -> Result<Vec<bool>, SpanBatchError> {
        let len = count.div_ceil(8);
        let bytes = self.take(len, what)?;
        let bit = |i: usize| bytes[len - 1 - i / 8] & (1 << (i % 8)) != 0;
        if (count..len * 8).any(bit) {
            return Err(SpanBatchError::Bits(what));
        }
        Ok((0..count).map(bit).collect())
    }

    /// One tx_data: an RLP list, after a type byte (1, 2 or 4) unless legacy.
    fn tx_data(&mut self, index: usize) -> Result<Bytes, SpanBatchError> {
        let bad = |reason: String| SpanBatchError::TxData { index, reason };
        let typed = match self.0.first() {
            Some(1 | 2 | 4) => 1,
            Some(byte) if *byte >= 0xc0 => 0,
            Some(byte) => return Err(bad(format!("transaction type {byte}"))),
            None => return Err(SpanBatchError::Truncated("tx_datas")),
        };
        let mut list = &self.0[typed..];
        let header = Header::decode(&mut list).map_err(|e| bad(e.to_string()))?;
        if !header.list {
            return Err(bad("not an RLP list".into()));
        }
        let header_len = self.0.len() - typed - list.len();
        let total = typed + header_len + header.payload_length;
        Ok(Bytes::copy_from_slice(self.take(total, "tx_datas")?))
    }
}

#[cfg(test)]
mod tests {
    use alloy_consensus::{Signed, TxEip1559, TxEip2930, TxEip7702, TxLegacy, TypedTransaction};
    use alloy_eips::{
        eip2718::Encodable2718,
        eip2930::{AccessList, AccessListItem},
        eip7702::{Authorization, SignedAuthorization},
    };
    use alloy_primitives::{Signature, TxKind, U256};
    use alloy_rlp::Decodable;
    use tephra_exec::dev::DevKey;

    use super::*;

    const CHAIN_ID: u64 = 901;

    /// op-node's bytes (testdata/README.md): decoded and encoded again,
    /// byte for byte.
    #[test]
    fn op_nodes_span_batch_decodes_and_encodes_back_byte_for_byte() {
        let body = include_bytes!("../testdata/raw_span_batch.bin");
        let batch = RawSpanBatch::decode(body).expect("op-node's span batch decodes");
        assert_eq!(batch.block_tx_counts, vec![8, 15, 15, 1]);
        assert_eq!(batch.txs.datas.len(), 39);
        let mut encoded = Vec::new();
        batch.encode_into(&mut encoded);
        assert_eq!(encoded, body.to_vec());
        for cut in [1, 100, body.len() / 2, body.len() - 1] {
            assert!(RawSpanBatch::decode(&body[..cut]).is_err(), "cut at {cut}");
        }
        let trailing = [body.as_slice(), &[0]].concat();
        assert_eq!(RawSpanBatch::decode(&trailing), Err(SpanBatchError::Trailing(1)));
    }

    /// One transaction of each kind a batch holds.
    fn every_kind() -> Vec<TxEnvelope> {
        let key = DevKey::dev(1);
        let to = Address::repeat_byte(0x42);
        let access_list = AccessList(vec![AccessListItem { address: to, storage_keys: vec![B256::repeat_byte(7)] }]);
        let authorization = Authorization { chain_id: U256::from(CHAIN_ID), address: to, nonce: 3 };
        let signed_authorization = {
            let signature = key.sign_hash(authorization.signature_hash());
            SignedAuthorization::new_unchecked(authorization, u8::from(signature.v()), signature.r(), signature.s())
        };
        let legacy = |chain_id, to| TxLegacy {
            chain_id,
            nonce: 1,
            gas_price: 7,
            gas_limit: 50_000,
            to,
            value: U256::from(5),
            input: Bytes::from_static(b"legacy"),
        };
        [
            TypedTransaction::Legacy(legacy(Some(CHAIN_ID), TxKind::Call(to))),
            TypedTransaction::Legacy(legacy(None, TxKind::Create)),
            TypedTransaction::Eip2930(TxEip2930 {
                chain_id: CHAIN_ID,
                nonce: 2,
                gas_price: 9,
                gas_limit: 60_000,
                to: TxKind::Call(to),
                value: U256::ZERO,
                access_list: access_list.clone(),
                input: Bytes::from_static(&[1, 2, 3]),
            }),
            TypedTransaction::Eip1559(TxEip1559 {
                chain_id: CHAIN_ID,
                nonce: 3,
                gas_limit: 21_000,
                max_fee_per_gas: 2_000_000_000,
                max_priority_fee_per_gas: 1,
                to: TxKind::Create,
                value: U256::from(1) << 70,
                access_list,
                input: Bytes::from_static(&[0x60, 0x00]),
            }),
            TypedTransaction::Eip7702(TxEip7702 {
                chain_id: CHAIN_ID,
                nonce: 4,
                gas_limit: 100_000,
                max_fee_per_gas: 3,
                max_priority_fee_per_gas: 2,
                to,
                value: U256::ZERO,
                access_list: AccessList::default(),
                authorization_list: vec![signed_authorization],
                input: Bytes::new(),
            }),
        ]
        .into_iter()
        .map(|tx| key.sign(tx))
        .collect()
    }

    /// Transaction `i` of `txs` built back from its columns, as a verifier
    /// does (`legacy`: its index among the legacy ones; `call`: among the
    /// calls).
    fn rebuilt(txs: &SpanBatchTxs, i: usize, legacy: usize, call: usize) -> TxEnvelope {
        let (r, s) = txs.signatures[i];
        let signature = Signature::new(U256::from_be_bytes(r), U256::from_be_bytes(s), txs.y_parity_bits[i]);
        let to = if txs.contract_creation_bits[i] { TxKind::Create } else { TxKind::Call(txs.tos[call]) };
        let (nonce, gas_limit) = (txs.nonces[i], txs.gases[i]);
        let data = &txs.datas[i];
        let (kind, mut rest) = if data[0] >= 0xc0 { (0, &data[..]) } else { (data[0], &data[1..]) };
        let header = Header::decode(&mut rest).unwrap();
        assert!(header.list && header.payload_length == rest.len());
        let field = |rest: &mut &[u8]| -> U256 { U256::decode(rest).unwrap() };
        match kind {
            0 => {
                let value = field(&mut rest);
                let gas_price = u128::decode(&mut rest).unwrap();
                let input = Bytes::decode(&mut rest).unwrap();
                let chain_id = txs.protected_bits[legacy].then_some(CHAIN_ID);
                let tx = TxLegacy { chain_id, nonce, gas_price, gas_limit, to, value, input };
                Signed::new_unhashed(tx, signature).into()
            }
            1 => {
                let value = field(&mut rest);
                let gas_price = u128::decode(&mut rest).unwrap();
                let input = Bytes::decode(&mut rest).unwrap();
                let access_list = AccessList::decode(&mut rest).unwrap();
                let tx = TxEip2930 { chain_id: CHAIN_ID, nonce, gas_price, gas_limit, to, value, access_list, input };
                Signed::new_unhashed(tx, signature).into()
            }
            2 => {
                let (value, max_priority_fee_per_gas, max_fee_per_gas, input, access_list) = dynamic_fee(&mut rest);
                let tx = TxEip1559 {
                    chain_id: CHAIN_ID,
                    nonce,
                    gas_limit,
                    max_fee_per_gas,
                    max_priority_fee_per_gas,
                    to,
                    value,
                    access_list,
                    input,
                };
                Signed::new_unhashed(tx, signature).into()
            }
            4 => {
                let (value, max_priority_fee_per_gas, max_fee_per_gas, input, access_list) = dynamic_fee(&mut rest);
                let authorization_list = Vec::<SignedAuthorization>::decode(&mut rest).unwrap();
                let TxKind::Call(to) = to else { panic!("a 7702 transaction calls") };
                let tx = TxEip7702 {
                    chain_id: CHAIN_ID,
                    nonce,
                    gas_limit,
                    max_fee_per_gas,
                    max_priority_fee_per_gas,
                    to,
                    value,
                    access_list,
                    authorization_list,
                    input,
                };
                Signed::new_unhashed(tx, signature).into()
            }
            other => panic!("type {other}"),
        }
    }

    /// The fields types 2 and 4 share: value, the two fees, data, access list.
    fn dynamic_fee(rest: &mut &[u8]) -> (U256, u128, u128, Bytes, AccessList) {
        let value = U256::decode(rest).unwrap();
        let (max_priority_fee_per_gas, max_fee_per_gas) = (u128::decode(rest).unwrap(), u128::decode(rest).unwrap());
        (
            value,
            max_priority_fee_per_gas,
            max_fee_per_gas,
            Bytes::decode(rest).unwrap(),
            AccessList::decode(rest).unwrap(),
        )
    }

    fn block(timestamp: u64, origin_number: u64, sequence_number: u64, txs: Vec<Bytes>) -> BatchBlock {
        BatchBlock {
            timestamp,
            parent_hash: B256::repeat_byte(u8::try_from(timestamp % 256).unwrap()),
            origin_number,
            origin_hash: B256::repeat_byte(u8::try_from(origin_number % 256).unwrap()),
            sequence_number,
            txs,
        }
    }

    #[test]
    fn every_kind_of_transaction_comes_back_from_its_columns() {
        let originals = every_kind();
        let raw: Vec<Bytes> = originals.iter().map(|tx| tx.encoded_2718().into()).collect();
        let blocks = [
            block(1_010, 20, 3, raw[..2].to_vec()),
            // A block of deposits only: no transactions.
            block(1_011, 21, 0, Vec::new()),
            block(1_012, 21, 1, raw[2..].to_vec()),
        ];
        let batch = RawSpanBatch::from_blocks(1_000, &blocks).unwrap();
        assert_eq!(batch.rel_timestamp, 10);
        assert_eq!((batch.l1_origin_num, batch.l1_origin_check), (21, [21u8; 20]));
        assert_eq!(batch.parent_check, [blocks[0].parent_hash.0[0]; 20]);
        assert_eq!(batch.origin_bits, vec![false, true, false], "a new epoch at block 1 only");
        assert_eq!(batch.block_tx_counts, vec![2, 0, 3]);
        let bytes = batch.batch_bytes();
        assert_eq!(bytes[0], SPAN_BATCH_TYPE);
        let decoded = RawSpanBatch::decode(&bytes[1..]).unwrap();
        assert_eq!(decoded, batch);
        let (mut legacy, mut call) = (0, 0);
        for (i, original) in originals.iter().enumerate() {
            let tx = rebuilt(&decoded.txs, i, legacy, call);
            assert_eq!(tx.encoded_2718(), original.encoded_2718(), "transaction {i}");
            let signer = tephra_exec::verify::recover_signer(tx.signature(), tx.signature_hash());
            assert_eq!(signer, Some(DevKey::dev(1).address()));
            legacy += usize::from(matches!(original, TxEnvelope::Legacy(_)));
            call += usize::from(original.to().is_some());
        }
    }

    #[test]
    fn what_no_batch_holds_is_refused() {
        assert_eq!(RawSpanBatch::from_blocks(0, &[]), Err(SpanBatchError::NoBlocks));
        // Nor is one read back: rel_timestamp 0, l1_origin_num 0, the two checks, block_count 0.
        let empty = [&[0u8, 0][..], &[0u8; 40], &[0u8]].concat();
        assert_eq!(RawSpanBatch::decode(&empty), Err(SpanBatchError::NoBlocks));
        assert_eq!(
            RawSpanBatch::from_blocks(2_000, &[block(1_000, 1, 0, Vec::new())]),
            Err(SpanBatchError::BeforeGenesis { index: 0 })
        );
        let garbage = block(1_000, 1, 0, vec![Bytes::from_static(&[0x02, 0xc0])]);
        assert!(matches!(RawSpanBatch::from_blocks(0, &[garbage]), Err(SpanBatchError::Transaction { .. })));
        // A set bit past the count, and a count over the limit.
        let mut body = Vec::new();
        RawSpanBatch::from_blocks(0, &[block(5, 1, 0, Vec::new())]).unwrap().encode_into(&mut body);
        let origin_bits_at = body.len() - 2;
        body[origin_bits_at] |= 0b10;
        assert_eq!(RawSpanBatch::decode(&body), Err(SpanBatchError::Bits("origin_bits")));
        let mut huge = vec![0, 0];
        huge.extend_from_slice(&[0; 40]);
        put_uvarint(&mut huge, SPAN_BATCH_ELEMENTS_MAX + 1);
        assert!(matches!(RawSpanBatch::decode(&huge), Err(SpanBatchError::TooMany { .. })));
        // Transaction counts within the limit each, over it together (and a
        // count near u64::MAX, which summed once overflowed: fuzz corpus).
        for counts in [[SPAN_BATCH_ELEMENTS_MAX / 2 + 1; 2], [SPAN_BATCH_ELEMENTS_MAX, u64::MAX]] {
            let mut body = vec![0, 0];
            body.extend_from_slice(&[0; 40]);
            put_uvarint(&mut body, 2);
            body.push(0);
            for count in counts {
                put_uvarint(&mut body, count);
            }
            assert!(matches!(RawSpanBatch::decode(&body), Err(SpanBatchError::TooMany { .. })), "{counts:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = RawSpanBatch::decode(&bytes);
        }
    }
}
