//! `kona-oracle derive`: the L2 chain derived from the L1 alone. kona-derive's whole pipeline
//! (`PipelineBuilder::build_polled`: L1 traversal, `EthereumDataSource` reading the batcher's
//! calldata and blob transactions, frames, channels, batches, Holocene batch validity, the
//! sequencing window's deposit-only blocks) yields payload attributes; the oracle's own
//! kona-executor chain executes them. Nothing of tephra is input: its block hashes are only
//! compared with the derived ones.

use crate::{
    Error,
    blobs::L1Blobs,
    block_on,
    chain::{Built, Chain, OwnBlocks},
    genesis::GenesisState,
    l1::L1Rpc,
    rpc::{Rpc, quantity},
    verify::{header_diff, io, mismatch, open_chains, parse_hex, receipt_diff, wait_for_block},
};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{B256, keccak256};
use alloy_rlp::Decodable;
use kona_derive::{
    ActivationSignal, DerivationPipeline, EthereumDataSource, OriginProvider, Pipeline, PipelineBuilder, PipelineError,
    PipelineErrorKind, PolledAttributesQueueStage, ResetError, ResetSignal, Signal, SignalReceiver,
    StatefulAttributesBuilder, StepResult,
};
use kona_genesis::RollupConfig;
use kona_protocol::{BlockInfo, L2BlockInfo, OpAttributesWithParent};
use op_alloy_consensus::OpBlock;
use serde_json::{Value, json};
use std::{
    io::Write,
    ops::RangeInclusive,
    panic::{AssertUnwindSafe, catch_unwind},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

/// The first byte of a deposit transaction (EIP-2718 type 0x7E).
const DEPOSIT_TX_TYPE: u8 = 0x7e;

/// Consecutive pipeline resets without a block or an L1 block in between: kona-derive is
/// stuck on the same data.
const MAX_RESETS: u32 = 16;

type DataSource = EthereumDataSource<L1Rpc, L1Blobs>;
type AttributesBuilder = StatefulAttributesBuilder<L1Rpc, OwnBlocks>;

/// kona-derive's polled pipeline over the L1 JSON-RPC and the oracle's own L2 blocks.
pub type KonaPipeline =
    DerivationPipeline<PolledAttributesQueueStage<DataSource, L1Rpc, OwnBlocks, AttributesBuilder>, OwnBlocks>;

#[derive(Debug, Clone)]
pub struct DeriveArgs {
    pub rollup: PathBuf,
    pub genesis: PathBuf,
    pub l1_rpc: String,
    pub l2_rpc: String,
    pub to: u64,
    /// How long to wait for L1 data the pipeline needs, or for a block tephra has not produced.
    pub timeout: Duration,
    /// Blocks that must be derived deposit-only and differ from tephra's; from the first of
    /// them on, no hash is compared with tephra's.
    pub expect_deposit_only: Option<RangeInclusive<u64>>,
}

/// `FROM..=TO` (block numbers, FROM <= TO).
pub fn parse_range(text: &str) -> Result<RangeInclusive<u64>, String> {
    let (from, to) = text.split_once("..=").ok_or_else(|| format!("{text}: not FROM..=TO"))?;
    let number = |s: &str| s.trim().parse::<u64>().map_err(|_| format!("{text}: {s} is not a block number"));
    let (from, to) = (number(from)?, number(to)?);
    if from == 0 || from > to {
        return Err(format!("{text}: needs 1 <= FROM <= TO"));
    }
    Ok(from..=to)
}

/// A block derived from the L1 and executed by the oracle.
#[derive(Debug, Clone)]
pub struct Derived {
    pub built: Built,
    /// The L1 block the pipeline was at when it derived the block (where its batch was complete,
    /// or where the sequencing window ran out for a deposit-only block).
    pub derived_from: BlockInfo,
    /// Non-deposit transactions (from the batch).
    pub user_transactions: usize,
    /// Holocene: kona-executor rejected the batch's block (this error), so it was replaced by
    /// its deposits and the channel was flushed.
    pub replaced: Option<String>,
}

impl Derived {
    /// The block's JSON line (without `ok` / the comparison).
    pub fn json(&self) -> Value {
        let built = &self.built;
        let mut line = json!({
            "block": built.header.number,
            "hash": built.header.hash(),
            "derived_from": {"number": self.derived_from.number, "hash": self.derived_from.hash},
            "l1_origin": built.l1_origin.number,
            "l1_origin_hash": built.l1_origin.hash,
            "sequence_number": built.sequence_number,
            "timestamp": built.header.timestamp,
            "transactions": built.transactions.len(),
            "deposits": built.derived,
            "user_transactions": self.user_transactions,
            "gas_used": built.header.gas_used,
            "state_root": built.header.state_root,
        });
        if let Some(error) = &self.replaced {
            line["replaced_by_deposits"] = json!(error);
        }
        line
    }
}

/// The oracle's chain, driven by kona-derive's pipeline.
pub struct Deriver {
    chain: Chain,
    pipeline: KonaPipeline,
    safe: L2BlockInfo,
    timeout: Duration,
}

impl std::fmt::Debug for Deriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deriver").field("safe", &self.safe.block_info.number).finish()
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// Waits (polling) until the L1 has block `number`.
fn wait_for_l1_block(l1: &L1Rpc, number: u64, timeout: Duration) -> Result<BlockInfo, Error> {
    let start = Instant::now();
    loop {
        let last = match l1.header_by_number(number) {
            Ok(Some(header)) => {
                return Ok(BlockInfo::new(header.hash_slow(), header.number, header.parent_hash, header.timestamp));
            }
            Ok(None) => format!("the L1 has no block {number}"),
            Err(e) if e.retry => e.message,
            Err(e) => return Err(Error::Io(e.message)),
        };
        if start.elapsed() >= timeout {
            return Err(Error::Io(format!("{last} (waited {} s)", timeout.as_secs_f64())));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Deriver {
    /// A pipeline at the L2 genesis (checked against rollup.json) and at rollup.json's L1
    /// genesis block, which the L1 must have (waited for up to `timeout`).
    pub fn new(cfg: RollupConfig, genesis: GenesisState, l1: L1Rpc, timeout: Duration) -> Result<Self, Error> {
        let chain = Chain::new(cfg.clone(), genesis, l1.clone())?;
        let origin = wait_for_l1_block(&l1, cfg.genesis.l1.number, timeout)?;
        if origin.hash != cfg.genesis.l1.hash {
            return Err(Error::Io(format!(
                "L1 block {} is {}, rollup.json genesis.l1.hash is {}: another L1",
                origin.number, origin.hash, cfg.genesis.l1.hash
            )));
        }
        let cfg = Arc::new(cfg);
        let own = chain.own_blocks();
        let source = EthereumDataSource::new_from_parts(l1.clone(), L1Blobs::new(l1.clone()), &cfg);
        let attributes = StatefulAttributesBuilder::new(cfg.clone(), own.clone(), l1.clone());
        let mut pipeline = PipelineBuilder::new()
            .rollup_config(cfg)
            .dap_source(source)
            .chain_provider(l1)
            .l2_chain_provider(own)
            .builder(attributes)
            .origin(origin)
            .build_polled();
        let safe = chain.head_info().map_err(|e| Error::Io(e.message))?;
        // The traversal starts with a default system config (batcher 0x0): a reset loads the
        // genesis one (from the oracle's genesis block, through `system_config_by_number`).
        block_on(pipeline.signal(ResetSignal { l2_safe_head: safe, l1_origin: origin, system_config: None }.signal()))
            .map_err(|e| Error::Io(format!("kona-derive reset at genesis: {e}")))?;
        Ok(Self { chain, pipeline, safe, timeout })
    }

    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// The pipeline's current L1 block.
    pub fn origin(&self) -> Option<BlockInfo> {
        self.pipeline.origin()
    }

    /// Steps the pipeline until it yields the next block's attributes, and executes them.
    /// Waits (up to the timeout, counted from the last L1 block the pipeline took) while the
    /// L1 has no more data. A critical pipeline error or a panic in kona-derive is a mismatch:
    /// L1 data kona rejects; an unavailable L1 is `Error::Io`.
    pub fn next_block(&mut self) -> Result<Derived, Error> {
        let number = self.safe.block_info.number + 1;
        let mut last_progress = Instant::now();
        let mut resets = 0;
        loop {
            let fail = |error: String, origin: Option<BlockInfo>| {
                mismatch(json!({
                    "block": number, "ok": false, "error": error,
                    "l1_origin_of_pipeline": origin.map(|o| json!({"number": o.number, "hash": o.hash})),
                }))
            };
            let safe = self.safe;
            let step = catch_unwind(AssertUnwindSafe(|| block_on(self.pipeline.step(safe)))).map_err(|p| {
                fail(format!("kona-derive panicked (L1 data it cannot handle?): {}", panic_message(p)), self.origin())
            })?;
            let error = match step {
                StepResult::PreparedAttributes => {
                    let Some(attributes) = self.pipeline.next() else { continue };
                    match self.execute(attributes)? {
                        Some(derived) => return Ok(derived),
                        None => {
                            last_progress = Instant::now();
                            continue;
                        }
                    }
                }
                StepResult::AdvancedOrigin => {
                    last_progress = Instant::now();
                    resets = 0;
                    continue;
                }
                StepResult::OriginAdvanceErr(e) | StepResult::StepFailed(e) => e,
            };
            let origin = self.origin();
            match error {
                PipelineErrorKind::Temporary(e) => {
                    if last_progress.elapsed() >= self.timeout {
                        return Err(Error::Io(format!(
                            "L2 block {number}: no L1 data to derive it within {} s; kona-derive is at L1 block {}: {e}",
                            self.timeout.as_secs_f64(),
                            origin.map_or("?".into(), |o| format!("{} ({})", o.number, o.hash)),
                        )));
                    }
                    // A provider error is the L1 head (or a node not answering): poll. Other
                    // temporary errors (not enough data yet) only need another step.
                    if matches!(e, PipelineError::Provider(_)) {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
                PipelineErrorKind::Reset(ResetError::ReorgDetected(expected, parent)) => {
                    return Err(Error::Io(format!(
                        "the L1 reorged under kona-derive (the next L1 block's parent is {parent}, not {expected}): derive from an L1 that does not reorg"
                    )));
                }
                PipelineErrorKind::Reset(reset) => {
                    resets += 1;
                    if resets > MAX_RESETS {
                        return Err(fail(format!("kona-derive keeps resetting at the same L1 data: {reset}"), origin));
                    }
                    let l1_origin = origin.ok_or_else(|| Error::Io("kona-derive has no L1 origin".into()))?;
                    let signal = if matches!(reset, ResetError::HoloceneActivation) {
                        ActivationSignal { l2_safe_head: safe, l1_origin, system_config: None }.signal()
                    } else {
                        ResetSignal { l2_safe_head: safe, l1_origin, system_config: None }.signal()
                    };
                    block_on(self.pipeline.signal(signal))
                        .map_err(|e| fail(format!("kona-derive reset ({reset}) failed: {e}"), origin))?;
                }
                PipelineErrorKind::Critical(PipelineError::Provider(e)) => {
                    return Err(Error::Io(format!("L2 block {number}: kona-derive cannot read the L1: {e}")));
                }
                PipelineErrorKind::Critical(e) => {
                    return Err(fail(format!("kona-derive: {e}"), origin));
                }
            }
        }
    }

    /// Executes attributes: the derived block, or `None` when a pre-Holocene block fails
    /// (kona drops the batch and derives on).
    fn execute(&mut self, attributes: OpAttributesWithParent) -> Result<Option<Derived>, Error> {
        let number = attributes.block_number();
        if attributes.parent != self.safe {
            return Err(Error::Io(format!(
                "kona-derive built on L2 block {} ({}), not on the oracle's head {} ({})",
                attributes.parent.block_info.number,
                attributes.parent.block_info.hash,
                self.safe.block_info.number,
                self.safe.block_info.hash
            )));
        }
        let derived_from =
            attributes.derived_from.ok_or_else(|| Error::Io(format!("L2 block {number}: no derived_from")))?;
        let mut attrs = attributes.inner;
        let is_deposit = |tx: &alloy_primitives::Bytes| tx.first() == Some(&DEPOSIT_TX_TYPE);
        let transactions = attrs.transactions.clone().unwrap_or_default();
        let deposits = transactions.iter().take_while(|tx| is_deposit(tx)).count();
        let (built, replaced) = match self.chain.execute(attrs.clone(), deposits, false) {
            Ok(built) => (built, None),
            Err(e) if self.chain.config().is_holocene_active(attrs.payload_attributes.timestamp) => {
                // Holocene (as kona's driver does): the block becomes deposit-only and the rest
                // of its channel is dropped.
                block_on(self.pipeline.signal(Signal::FlushChannel))
                    .map_err(|f| Error::Io(format!("kona-derive FlushChannel: {f}")))?;
                attrs.transactions = Some(transactions.iter().filter(|tx| is_deposit(tx)).cloned().collect());
                let only = attrs.transactions.as_ref().map_or(0, Vec::len);
                let built = self.chain.execute(attrs, only, false).map_err(|f| {
                    mismatch(json!({
                        "block": number, "ok": false,
                        "error": format!("kona-executor rejected the batch's block ({}) and its deposits-only replacement: {}", e.message, f.message),
                    }))
                })?;
                (built, Some(e.message))
            }
            Err(_) => return Ok(None),
        };
        self.safe = self.chain.head_info().map_err(|e| Error::Io(e.message))?;
        let user_transactions = built.transactions.iter().filter(|tx| !is_deposit(tx)).count();
        Ok(Some(Derived { built, derived_from, user_transactions, replaced }))
    }
}

/// The mismatch object for a derived block whose hash is not tephra's. tephra's block
/// (`debug_getRawBlock`) and receipts are read for the diff only.
fn hash_mismatch(l2: &Rpc, derived: &Derived, tephra_hash: B256) -> Error {
    let number = derived.built.header.number;
    let mut out = derived.json();
    out["ok"] = json!(false);
    out["error"] = json!("block hash differs");
    out["oracle_hash"] = json!(derived.built.header.hash());
    out["tephra_hash"] = json!(tephra_hash);
    let block = l2
        .call("debug_getRawBlock", json!([quantity(number)]))
        .map_err(io)
        .and_then(|raw| parse_hex(&raw, "debug_getRawBlock"))
        .and_then(|raw| OpBlock::decode(&mut raw.as_slice()).map_err(|e| Error::Io(e.to_string())));
    match block {
        Ok(block) if block.header.hash_slow() == tephra_hash => {
            out["header_diff"] = json!(header_diff(derived.built.header.inner(), &block.header));
            let ours: Vec<B256> = derived.built.transactions.iter().map(keccak256).collect();
            let theirs: Vec<B256> = block.body.transactions.iter().map(|tx| keccak256(tx.encoded_2718())).collect();
            let diff: Vec<Value> = (0..ours.len().max(theirs.len()))
                .filter(|&i| ours.get(i) != theirs.get(i))
                .map(|i| json!({"index": i, "oracle": ours.get(i), "tephra": theirs.get(i)}))
                .collect();
            out["transaction_diff"] = json!(diff);
            out["receipt_diff"] = receipt_diff(l2, number, &derived.built);
        }
        Ok(block) => {
            out["header_diff"] =
                json!(format!("debug_getRawBlock({number}) hashes to {}, not tephra's hash", block.header.hash_slow()));
        }
        Err(e) => out["header_diff"] = json!(format!("tephra's block is unavailable for a diff: {e}")),
    }
    mismatch(out)
}

/// Runs `derive`, one JSON line per block on `out`.
pub fn derive(args: &DeriveArgs, out: &mut dyn Write) -> Result<(), Error> {
    let paths = (&args.rollup, &args.genesis);
    let build = |cfg, genesis, l1| Deriver::new(cfg, genesis, l1, args.timeout);
    let (mut deriver, _, l2, genesis_number) = open_chains(paths, &args.l1_rpc, &args.l2_rpc, args.timeout, build)?;
    let write = |out: &mut dyn Write, line: Value| writeln!(out, "{line}").map_err(|e| Error::Io(e.to_string()));
    let expected = args.expect_deposit_only.clone();
    let mut derived_count = 0;
    let mut compared = 0;
    for number in genesis_number + 1..=args.to {
        let derived = deriver.next_block()?;
        if derived.built.header.number != number {
            return Err(Error::Io(format!("kona-derive yielded block {}, not {number}", derived.built.header.number)));
        }
        let hash = derived.built.header.hash();
        let mut line = derived.json();
        line["ok"] = json!(true);
        match &expected {
            Some(range) if range.contains(&number) => {
                let tephra_hash = wait_for_block(&l2, number, args.timeout)?;
                let error = if derived.user_transactions != 0 {
                    Some(format!(
                        "expected a deposit-only block (--expect-deposit-only), kona derived {} user transactions",
                        derived.user_transactions
                    ))
                } else if hash == tephra_hash {
                    Some("tephra's block is the deposit-only block kona derived; --expect-deposit-only expected it to differ".into())
                } else {
                    None
                };
                if let Some(error) = error {
                    line["ok"] = json!(false);
                    line["error"] = json!(error);
                    line["tephra_hash"] = json!(tephra_hash);
                    return Err(mismatch(line));
                }
                line["check"] = json!("deposit-only");
                line["tephra_hash"] = json!(tephra_hash);
                compared += 1;
            }
            Some(range) if number > *range.end() => line["check"] = json!("none"),
            _ => {
                let tephra_hash = wait_for_block(&l2, number, args.timeout)?;
                if hash != tephra_hash {
                    return Err(hash_mismatch(&l2, &derived, tephra_hash));
                }
                line["check"] = json!("hash");
                compared += 1;
            }
        }
        write(out, line)?;
        derived_count += 1;
    }
    let head = deriver.chain().head();
    let origin = deriver.origin();
    write(
        out,
        json!({
            "result": "ok", "blocks": derived_count, "compared": compared, "to": args.to, "head": head.hash_slow(),
            "l1_origin_of_pipeline": origin.map(|o| json!({"number": o.number, "hash": o.hash})),
        }),
    )
}
