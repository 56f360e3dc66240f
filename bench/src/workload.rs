//! Workloads: deterministic from a seed and pre-signed into a folder before
//! anything is measured, so that signing never competes with the node.
//!
//! A workload folder holds `genesis.json` (the dev chain plus the funded
//! accounts and the workload's contract, deployed and set up in-process),
//! `txs.bin` (the raw EIP-2718 transactions in send order, each behind its
//! length as a little-endian u32) and `workload.json` (what made them).
//!
//! Transaction `i` is sent by account `i % accounts` with nonce
//! `i / accounts`: one sender's transactions are `accounts` apart, so at any
//! rate the harness offers, a sender's previous transaction has long been
//! preconfirmed when its next one goes out.

use std::{fs, path::Path};

use alloy_consensus::{TxEip1559, TypedTransaction};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, TxKind, U256, hex, keccak256};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tephra_exec::{
    BlockBuilder, ChainSpec, SequentialExecutor, StateDb,
    dev::{DevKey, SplitMix64, first_block},
};
use tephra_testkit::abi::{calldata as abi, word as word_address};

pub const MANIFEST_FILE: &str = "workload.json";
pub const TXS_FILE: &str = "txs.bin";
pub const GENESIS_FILE: &str = "genesis.json";

/// Accounts at most: a key per account is derived at generation, and the
/// genesis holds them all.
pub const ACCOUNTS_MAX: usize = 1_000_000;
/// Transactions at most in one workload (about 130 bytes each in memory).
pub const TXS_MAX: usize = 20_000_000;
/// Each generated account's balance: 1,000 ETH.
const ACCOUNT_BALANCE_WEI: u128 = 1_000_000_000_000_000_000_000;
/// Token units minted to each account for the token workload.
const TOKEN_UNITS_PER_ACCOUNT: u64 = 1_000_000_000;
/// The fee cap and tip of every workload transaction; the dev chain's base
/// fee starts at 1 gwei and only falls while blocks stay under half full.
const MAX_FEE_PER_GAS: u128 = 100_000_000_000;
const PRIORITY_FEE_PER_GAS: u128 = 1;
/// Dev key 9 deploys the workload's contract (it is funded by the dev genesis).
const DEPLOYER_DEV_KEY: usize = 9;
/// One `submit` to the shared leaderboard in this many game transactions.
const GAME_SUBMIT_ONE_IN: u64 = 10;

const TOKEN_BIN: &str = include_str!("../../contracts/Token.bin");
const COUNTER_BIN: &str = include_str!("../../contracts/Counter.bin");
const GAME_BIN: &str = include_str!("../../contracts/Game.bin");

/// What the transactions do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// ETH transfers of 1 wei to other accounts of the workload.
    Transfers,
    /// ERC-20 transfers on contracts/Token.sol between the accounts.
    Token,
    /// `bump()` on contracts/Counter.sol: every transaction writes one slot.
    Hot,
    /// contracts/Game.sol: players `move` (their own state); one in ten
    /// `submit`s a score to the shared leaderboard.
    Game,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Transfers, Kind::Token, Kind::Hot, Kind::Game];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Transfers => "transfers",
            Kind::Token => "token",
            Kind::Hot => "hot",
            Kind::Game => "game",
        }
    }

    fn gas_limit(self) -> u64 {
        match self {
            Kind::Transfers => 21_000,
            Kind::Token => 60_000,
            Kind::Hot => 50_000,
            Kind::Game => 150_000,
        }
    }

    fn creation_code(self) -> Option<&'static str> {
        match self {
            Kind::Transfers => None,
            // The token's constructor takes the initial supply: none.
            Kind::Token => Some(TOKEN_BIN),
            Kind::Hot => Some(COUNTER_BIN),
            Kind::Game => Some(GAME_BIN),
        }
    }
}

/// What a workload folder was made from; with it the folder can be remade
/// byte for byte.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub kind: Kind,
    pub seed: u64,
    pub txs: usize,
    pub accounts: usize,
    pub chain_id: u64,
    /// The workload's contract, when it has one.
    pub contract: Option<Address>,
    /// CRC-32C of `txs.bin`.
    pub txs_crc32c: u32,
}

/// A workload in memory: one buffer, transactions by offset.
#[derive(Debug)]
pub struct Workload {
    pub manifest: Manifest,
    bytes: Vec<u8>,
    spans: Vec<(usize, usize)>,
}

impl Workload {
    pub fn load(dir: &Path) -> Result<Self, String> {
        let text = fs::read_to_string(dir.join(MANIFEST_FILE))
            .map_err(|e| format!("{}: {e} (run `tephra-bench generate` first)", dir.join(MANIFEST_FILE).display()))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| format!("{MANIFEST_FILE}: {e}"))?;
        let bytes = fs::read(dir.join(TXS_FILE)).map_err(|e| format!("{TXS_FILE}: {e}"))?;
        if crc32c::crc32c(&bytes) != manifest.txs_crc32c {
            return Err(format!("{TXS_FILE} does not match the checksum in {MANIFEST_FILE}: regenerate it"));
        }
        let mut spans = Vec::with_capacity(manifest.txs);
        let mut at = 0;
        while at < bytes.len() {
            let len_bytes: [u8; 4] = bytes
                .get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| format!("{TXS_FILE} ends inside a length at byte {at}"))?;
            let len = usize::try_from(u32::from_le_bytes(len_bytes)).map_err(|e| e.to_string())?;
            let start = at + 4;
            if start + len > bytes.len() {
                return Err(format!("{TXS_FILE} ends inside a transaction at byte {at}"));
            }
            spans.push((start, len));
            at = start + len;
        }
        if spans.len() != manifest.txs {
            return Err(format!(
                "{TXS_FILE} holds {} transactions, {MANIFEST_FILE} says {}",
                spans.len(),
                manifest.txs
            ));
        }
        Ok(Self { manifest, bytes, spans })
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn tx(&self, index: usize) -> &[u8] {
        let (start, len) = self.spans[index];
        &self.bytes[start..start + len]
    }

    /// The transaction hash: keccak256 of the typed envelope.
    pub fn hash(&self, index: usize) -> B256 {
        keccak256(self.tx(index))
    }
}

/// The key of account `index` of the workload seeded `seed`.
pub fn account_key(seed: u64, index: usize) -> DevKey {
    DevKey::from_seed(seed.rotate_left(32) ^ u64::try_from(index).expect("accounts fit in 64 bits"))
}

/// Generates the workload into `dir` (created), with a progress bar on
/// stderr while signing.
pub fn generate(kind: Kind, seed: u64, txs: usize, accounts: usize, dir: &Path) -> Result<Manifest, String> {
    if !(2..=ACCOUNTS_MAX).contains(&accounts) {
        return Err(format!("accounts must be 2..={ACCOUNTS_MAX}, not {accounts}"));
    }
    if txs == 0 || txs > TXS_MAX {
        return Err(format!("txs must be 1..={TXS_MAX}, not {txs}"));
    }
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let progress = indicatif::ProgressBar::new(u64::try_from(accounts + txs).unwrap_or(u64::MAX))
        .with_style(
            indicatif::ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({eta} left)")
                .expect("a valid template")
                .progress_chars("=> "),
        )
        .with_message(format!("{} keys", kind.name()));
    let keys: Vec<DevKey> = (0..accounts)
        .into_par_iter()
        .map(|i| {
            progress.inc(1);
            account_key(seed, i)
        })
        .collect();
    let (genesis, contract) = build_genesis(kind, &keys)?;
    let chain_id = ChainSpec::dev().chain_id();
    progress.set_message(format!("{} txs", kind.name()));
    let raws: Vec<Vec<u8>> = (0..txs)
        .into_par_iter()
        .map(|i| {
            progress.inc(1);
            sign_tx(kind, seed, chain_id, contract, &keys, i)
        })
        .collect();
    progress.finish_and_clear();
    let mut bytes = Vec::with_capacity(raws.iter().map(|r| 4 + r.len()).sum());
    for raw in &raws {
        bytes.extend_from_slice(&u32::try_from(raw.len()).expect("a transaction is small").to_le_bytes());
        bytes.extend_from_slice(raw);
    }
    let manifest = Manifest { kind, seed, txs, accounts, chain_id, contract, txs_crc32c: crc32c::crc32c(&bytes) };
    let write = |name: &str, data: &[u8]| fs::write(dir.join(name), data).map_err(|e| format!("{name}: {e}"));
    write(GENESIS_FILE, genesis.as_bytes())?;
    write(TXS_FILE, &bytes)?;
    write(MANIFEST_FILE, serde_json::to_string_pretty(&manifest).expect("serialisable").as_bytes())?;
    Ok(manifest)
}

/// Transaction `index`: its sender, nonce and call follow from the index and
/// the seed alone, so generation runs in parallel and stays deterministic.
fn sign_tx(kind: Kind, seed: u64, chain_id: u64, contract: Option<Address>, keys: &[DevKey], index: usize) -> Vec<u8> {
    let accounts = keys.len();
    let (sender, nonce) = (index % accounts, u64::try_from(index / accounts).expect("fits"));
    let mut rng = SplitMix64(seed ^ u64::try_from(index).expect("fits").wrapping_mul(0x9e37_79b9_7f4a_7c15));
    // Another account of the workload.
    let mut other = || keys[(sender + 1 + rng.pick(accounts - 1)) % accounts].address();
    let key = &keys[sender];
    let (to, value, input) = match kind {
        Kind::Transfers => (other(), U256::from(1), Vec::new()),
        Kind::Token => {
            let to = other();
            (
                contract.expect("the token"),
                U256::ZERO,
                abi("transfer(address,uint256)", &[word_address(to), U256::from(1)]),
            )
        }
        Kind::Hot => (contract.expect("the counter"), U256::ZERO, abi("bump()", &[])),
        Kind::Game => {
            let input = if rng.below(GAME_SUBMIT_ONE_IN) == 0 {
                abi("submit(uint64)", &[U256::from(rng.below(1_000_000))])
            } else {
                let step = |rng: &mut SplitMix64| word_i64(i64::try_from(rng.below(7)).expect("small") - 3);
                let (dx, dy) = (step(&mut rng), step(&mut rng));
                abi("move(int64,int64)", &[dx, dy])
            };
            (contract.expect("the game"), U256::ZERO, input)
        }
    };
    key.sign(TypedTransaction::Eip1559(TxEip1559 {
        chain_id,
        nonce,
        gas_limit: kind.gas_limit(),
        max_fee_per_gas: MAX_FEE_PER_GAS,
        max_priority_fee_per_gas: PRIORITY_FEE_PER_GAS,
        to: TxKind::Call(to),
        value,
        input: input.into(),
        ..Default::default()
    }))
    .encoded_2718()
}

/// An int64 ABI word: two's complement, sign-extended to 256 bits.
fn word_i64(value: i64) -> U256 {
    let magnitude = U256::from(value.unsigned_abs());
    if value < 0 { U256::ZERO.wrapping_sub(magnitude) } else { magnitude }
}

/// The dev genesis plus `keys` funded and, for the contract workloads, the
/// contract as deployed (and, for the token, minted to every account) by
/// executing its creation in-process: the genesis carries the resulting code
/// and storage, so a peer starts with it without any setup transaction.
fn build_genesis(kind: Kind, keys: &[DevKey]) -> Result<(String, Option<Address>), String> {
    let mut genesis: Value = serde_json::from_str(tephra_exec::chainspec::DEV_GENESIS_JSON).expect("dev genesis");
    let alloc = genesis["alloc"].as_object_mut().expect("an alloc");
    for key in keys {
        alloc.insert(key.address().to_string(), json!({ "balance": format!("{ACCOUNT_BALANCE_WEI:#x}") }));
    }
    let Some(creation_hex) = kind.creation_code() else {
        return Ok((genesis.to_string(), None));
    };
    let spec = ChainSpec::from_genesis_json(&genesis.to_string()).map_err(|e| e.to_string())?;
    let deployer = DevKey::dev(DEPLOYER_DEV_KEY);
    let contract = deployer.address().create(0);
    let mut creation = hex::decode(creation_hex.trim()).map_err(|e| format!("contract bytecode: {e}"))?;
    if kind == Kind::Token {
        creation.extend_from_slice(&[0u8; 32]);
    }
    let mut setup = vec![setup_call(&deployer, spec.chain_id(), 0, TxKind::Create, creation)];
    if kind == Kind::Token {
        let units = U256::from(TOKEN_UNITS_PER_ACCOUNT);
        setup.extend(keys.iter().enumerate().map(|(i, key)| {
            let nonce = 1 + u64::try_from(i).expect("fits");
            let mint = abi("mint(address,uint256)", &[word_address(key.address()), units]);
            setup_call(&deployer, spec.chain_id(), nonce, TxKind::Call(contract), mint)
        }));
    }
    let state = execute_setup(&spec, setup)?;
    let account = state.account(&contract).ok_or("the contract was not created")?;
    let code = state.code(&account.code_hash).ok_or("the contract has no code")?;
    // Sorted by slot: the same genesis bytes every time.
    let storage: std::collections::BTreeMap<B256, B256> =
        account.storage.iter().map(|(slot, value)| (B256::from(*slot), B256::from(*value))).collect();
    genesis["alloc"].as_object_mut().expect("an alloc").insert(
        contract.to_string(),
        json!({
            "balance": "0x0",
            "nonce": format!("{:#x}", account.nonce),
            "code": Bytes::copy_from_slice(code.original_byte_slice()),
            "storage": storage,
        }),
    );
    Ok((genesis.to_string(), Some(contract)))
}

fn setup_call(key: &DevKey, chain_id: u64, nonce: u64, to: TxKind, input: Vec<u8>) -> Vec<u8> {
    key.sign(TypedTransaction::Eip1559(TxEip1559 {
        chain_id,
        nonce,
        gas_limit: 3_000_000,
        max_fee_per_gas: MAX_FEE_PER_GAS,
        max_priority_fee_per_gas: PRIORITY_FEE_PER_GAS,
        to,
        input: input.into(),
        ..Default::default()
    }))
    .encoded_2718()
}

/// Executes `raws` in one block on `spec`'s genesis; every one must succeed.
fn execute_setup(spec: &ChainSpec, raws: Vec<Vec<u8>>) -> Result<StateDb, String> {
    let (params, verifier) = first_block(spec, u64::MAX / 2);
    let verified =
        raws.par_iter().map(|raw| verifier.verify(raw).map_err(|e| e.to_string())).collect::<Result<Vec<_>, _>>()?;
    let count = verified.len();
    let mut state = spec.genesis_state();
    let mut builder = BlockBuilder::open(params, &mut state);
    builder.execute(&mut SequentialExecutor, &mut state, verified, |_, _| {});
    let failed = builder.transactions().iter().filter(|t| !t.receipt.status.coerce_status()).count();
    if builder.transactions().len() != count || failed > 0 {
        return Err(format!(
            "setup: {} of {count} transactions executed, {failed} failed",
            builder.transactions().len()
        ));
    }
    builder.seal(&mut state);
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        tephra_testkit::fresh_dir(&format!("bench-{name}"))
    }

    /// Every transaction of every kind executes successfully, in send order,
    /// on the genesis generated with it; and the same seed gives the same
    /// bytes.
    #[test]
    fn every_kind_executes_on_its_genesis_and_is_deterministic() {
        for kind in Kind::ALL {
            let (a, b) = (temp_dir(&format!("{}-a", kind.name())), temp_dir(&format!("{}-b", kind.name())));
            let manifest = generate(kind, 7, 600, 50, &a).unwrap();
            assert_eq!(generate(kind, 7, 600, 50, &b).unwrap(), manifest);
            for file in [TXS_FILE, GENESIS_FILE] {
                let (left, right) = (fs::read(a.join(file)).unwrap(), fs::read(b.join(file)).unwrap());
                assert!(left == right, "{kind:?}: {file} differs between two runs of one seed");
            }
            let other = generate(kind, 8, 600, 50, &b).unwrap();
            assert_ne!(other.txs_crc32c, manifest.txs_crc32c, "{kind:?}: another seed, other transactions");

            let workload = Workload::load(&a).unwrap();
            assert_eq!(workload.len(), 600);
            let spec = ChainSpec::from_genesis_json(&fs::read_to_string(a.join(GENESIS_FILE)).unwrap()).unwrap();
            let raws = (0..workload.len()).map(|i| workload.tx(i).to_vec()).collect();
            let state = execute_setup(&spec, raws).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            match kind {
                Kind::Hot => assert_eq!(state.storage_at(&manifest.contract.unwrap(), U256::ZERO), U256::from(600)),
                Kind::Game => {
                    // Slot 2 counts the leaderboard submissions: about one in ten.
                    let submissions = state.storage_at(&manifest.contract.unwrap(), U256::from(2));
                    assert!(submissions > U256::from(20) && submissions < U256::from(120), "{submissions}");
                }
                Kind::Transfers | Kind::Token => {}
            }
            let _ = (fs::remove_dir_all(&a), fs::remove_dir_all(&b));
        }
    }

    #[test]
    fn a_damaged_workload_is_refused() {
        let dir = temp_dir("damaged");
        generate(Kind::Transfers, 1, 10, 4, &dir).unwrap();
        let mut bytes = fs::read(dir.join(TXS_FILE)).unwrap();
        bytes[20] ^= 1;
        fs::write(dir.join(TXS_FILE), &bytes).unwrap();
        assert!(Workload::load(&dir).unwrap_err().contains("checksum"));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn abi_words() {
        assert_eq!(word_i64(-1), U256::MAX);
        assert_eq!(word_i64(3), U256::from(3));
        assert_eq!(&abi("transfer(address,uint256)", &[])[..], &hex!("a9059cbb"));
    }
}
