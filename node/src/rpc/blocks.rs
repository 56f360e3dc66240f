//! Blocks, transactions, receipts and preconfirmations, as the chain view
//! holds them: the kept sealed blocks and the open (preconfirmed) one.

use alloy_primitives::B256;
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde_json::{Value, json};

use super::{
    RpcResult,
    params::{BlockTag, list, param, parse_tag, parse_u64, resolve},
};
use crate::{
    chain_view::ChainView,
    format::{self, Position, qty},
    shared::Shared,
    view::{OpBlockInfo, StoredBlock, StoredTx},
};

pub(super) fn block_number(shared: &Shared) -> RpcResult {
    Ok(json!(qty(shared.view.read().expect("view lock").head().header.number)))
}

/// A kept sealed block, copied out of the view: its transactions are shared,
/// so the copy is a header and a few pointers. The JSON of a block of 10,000
/// transactions takes milliseconds to build, and the view's lock must not be
/// held that long: the sequencer takes it to write every mini-block.
fn kept_block(shared: &Shared, tag: BlockTag) -> Option<StoredBlock> {
    let view = shared.view.read().expect("view lock");
    resolve(&view, tag).and_then(|n| view.block(n)).cloned()
}

pub(super) fn block_by_number(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let p = list(params)?;
    let tag = parse_tag(p.first())?;
    let full = p.get(1).and_then(Value::as_bool).unwrap_or(false);
    if tag == BlockTag::Pending {
        return Ok(format::pending_block(shared.view.read().expect("view lock").open_block(), full));
    }
    Ok(kept_block(shared, tag).map_or(Value::Null, |b| format::block(&b, full)))
}

pub(super) fn block_by_hash(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let p = list(params)?;
    let hash: B256 = param(&p, 0, "blockHash")?;
    let full = p.get(1).and_then(Value::as_bool).unwrap_or(false);
    Ok(kept_block(shared, BlockTag::Hash(hash)).map_or(Value::Null, |b| format::block(&b, full)))
}

/// Erigon's erigon_getHeaderByNumber, as Otterscan reads it: a kept block's
/// header alone, with tephra's block signature (null until made); null for
/// a block not kept, and for `pending`, which has no header until sealed.
pub(super) fn header_by_number(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let p = list(params)?;
    let tag = parse_tag(p.first())?;
    if tag == BlockTag::Pending {
        return Ok(Value::Null);
    }
    Ok(kept_block(shared, tag).map_or(Value::Null, |b| format::signed_header(&b)))
}

pub(super) fn transaction_by_hash(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let p = list(params)?;
    let hash: B256 = param(&p, 0, "hash")?;
    let view = shared.view.read().expect("view lock");
    Ok(view.tx(&hash).map_or(Value::Null, |(number, index, tx)| {
        let block_hash = view.block(number).map(|b| b.hash);
        format::transaction(tx, Some(Position { block_number: number, block_hash, index }))
    }))
}

/// A sealed transaction's receipt; a preconfirmed one has none yet here.
pub(super) fn transaction_receipt(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let p = list(params)?;
    let hash: B256 = param(&p, 0, "hash")?;
    Ok(receipt_of(&shared.view.read().expect("view lock"), &hash, false).unwrap_or(Value::Null))
}

/// A block's transactions as reads name it (a tag, a number or a hash): a
/// kept sealed block, or at `pending` the open block's preconfirmed ones (no
/// block hash yet).
struct BlockTxs<'a> {
    number: u64,
    hash: Option<B256>,
    txs: &'a [StoredTx],
    op: Option<&'a OpBlockInfo>,
}

impl<'a> BlockTxs<'a> {
    fn of(view: &'a ChainView, tag: BlockTag) -> Option<Self> {
        if tag == BlockTag::Pending {
            let open = view.open_block();
            return Some(Self { number: open.params.number, hash: None, txs: &open.txs, op: open.op.as_deref() });
        }
        resolve(view, tag).and_then(|n| view.block(n)).map(Self::kept)
    }

    fn kept(block: &'a StoredBlock) -> Self {
        Self { number: block.header.number, hash: Some(block.hash), txs: &block.txs, op: block.op.as_deref() }
    }

    fn position(&self, index: usize) -> Position {
        Position { block_number: self.number, block_hash: self.hash, index }
    }
}

/// A block's tag (or number) as the first parameter, or its hash with
/// `by_hash`.
fn block_param(p: &[Value], by_hash: bool) -> Result<BlockTag, ErrorObjectOwned> {
    if by_hash { Ok(BlockTag::Hash(param(p, 0, "blockHash")?)) } else { parse_tag(p.first()) }
}

/// Every receipt of a block, in order; null for a block not kept.
/// A kept block's are built with the view's lock released (see `kept_block`).
pub(super) fn block_receipts(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let p = list(params)?;
    let tag = parse_tag(p.first())?;
    let receipts = |block: BlockTxs<'_>| {
        let each = block.txs.iter().enumerate().map(|(index, tx)| format::receipt(tx, block.position(index), block.op));
        Value::Array(each.collect())
    };
    if tag == BlockTag::Pending {
        let view = shared.view.read().expect("view lock");
        return Ok(BlockTxs::of(&view, tag).map_or(Value::Null, receipts));
    }
    Ok(kept_block(shared, tag).map_or(Value::Null, |b| receipts(BlockTxs::kept(&b))))
}

/// eth_getBlockTransactionCountByNumber / ByHash: null for a block not kept.
pub(super) fn transaction_count(params: &Params<'_>, shared: &Shared, by_hash: bool) -> RpcResult {
    let tag = block_param(&list(params)?, by_hash)?;
    let view = shared.view.read().expect("view lock");
    Ok(BlockTxs::of(&view, tag).map_or(Value::Null, |block| json!(qty(block.txs.len() as u64))))
}

/// eth_getTransactionByBlockNumberAndIndex / ByBlockHashAndIndex: null for
/// a block not kept or an index beyond it.
pub(super) fn transaction_at(params: &Params<'_>, shared: &Shared, by_hash: bool) -> RpcResult {
    let p = list(params)?;
    let tag = block_param(&p, by_hash)?;
    let index = parse_u64(&param::<String>(&p, 1, "index")?)?;
    let view = shared.view.read().expect("view lock");
    let Some(block) = BlockTxs::of(&view, tag) else { return Ok(Value::Null) };
    let found = usize::try_from(index).ok().and_then(|index| Some((index, block.txs.get(index)?)));
    Ok(found.map_or(Value::Null, |(index, tx)| format::transaction(tx, Some(block.position(index)))))
}

/// eth_getUncleCountByBlockNumber / ByBlockHash: a rollup's blocks have no
/// uncles; null for a block not kept.
pub(super) fn uncle_count(params: &Params<'_>, shared: &Shared, by_hash: bool) -> RpcResult {
    let tag = block_param(&list(params)?, by_hash)?;
    let view = shared.view.read().expect("view lock");
    Ok(BlockTxs::of(&view, tag).map_or(Value::Null, |_| json!(qty(0u64))))
}

/// tephra's own: a transaction's signed preconfirmation, checkable back to
/// the block key.
pub(super) fn preconfirmation(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let p = list(params)?;
    let hash: B256 = param(&p, 0, "hash")?;
    let view = shared.view.read().expect("view lock");
    Ok(view.tx(&hash).and_then(|(_, index, tx)| format::preconfirmation(tx, index)).unwrap_or(Value::Null))
}

/// The receipt of transaction `hash`; one in the open block only with
/// `include_open`.
pub(super) fn receipt_of(view: &ChainView, hash: &B256, include_open: bool) -> Option<Value> {
    let (block_number, index, tx) = view.tx(hash)?;
    let block_hash = view.block(block_number).filter(|b| b.header.number == block_number).map(|b| b.hash);
    if block_hash.is_none() && !include_open {
        return None;
    }
    Some(format::receipt(tx, Position { block_number, block_hash, index }, view.op_of(block_number)))
}

/// geth's debug_getRawBlock: a kept sealed block as RLP (header, then its
/// transactions in their EIP-2718 encodings, no uncles, the withdrawals
/// list when the header has a root), as verifiers and op-node's tools read it.
pub(super) fn raw_block(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let p = list(params)?;
    let tag = parse_tag(p.first())?;
    let Some(block) = kept_block(shared, tag) else { return Ok(Value::Null) };
    Ok(json!(format!("0x{}", hex::encode(format::block_rlp(&block)))))
}

/// geth's debug_getRawTransaction: a kept transaction's EIP-2718 encoding.
pub(super) fn raw_transaction(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let p = list(params)?;
    let hash: B256 = param(&p, 0, "hash")?;
    let view = shared.view.read().expect("view lock");
    Ok(view.tx(&hash).map_or(Value::Null, |(_, _, tx)| {
        json!(format!("0x{}", hex::encode(alloy_eips::eip2718::Encodable2718::encoded_2718(&tx.envelope))))
    }))
}
