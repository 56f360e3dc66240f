//! rollup.json and genesis.json: loading, and the L2 genesis block built from the alloc the way
//! op-geth's `core.Genesis.ToBlock` does, with kona-mpt tries.

use crate::Error;
use alloy_consensus::{EMPTY_OMMER_ROOT_HASH, EMPTY_ROOT_HASH, Header, Sealable, Sealed};
use alloy_eips::eip7685::EMPTY_REQUESTS_HASH;
use alloy_genesis::Genesis;
use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use alloy_trie::TrieAccount;
use kona_genesis::RollupConfig;
use kona_mpt::{Nibbles, NoopTrieProvider, TrieNode};
use kona_protocol::Predeploys;
use std::{collections::HashMap, io::Read, path::Path};

/// A file's bytes; `.gz` files are gunzipped.
pub fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::Io(format!("{}: gunzip: {e}", path.display())))?;
        return Ok(out);
    }
    Ok(bytes)
}

/// rollup.json, as kona reads it (`RollupConfig` is `deny_unknown_fields`). Forks kona 0.4.5
/// cannot execute (Jovian: mapped to Isthmus by `spec_id`; interop) are refused.
pub fn load_rollup(path: &Path) -> Result<RollupConfig, Error> {
    let bytes = read_file(path)?;
    let cfg: RollupConfig = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Io(format!("{}: not a kona rollup config: {e}", path.display())))?;
    if cfg.hardforks.jovian_time.is_some() || cfg.hardforks.interop_time.is_some() {
        return Err(Error::Io(format!(
            "{}: jovian_time / interop_time are set: kona 0.4.5 (op-revm 8) cannot execute them",
            path.display()
        )));
    }
    Ok(cfg)
}

/// genesis.json: the alloy `Genesis` and the two header fields it does not carry.
#[derive(Debug, Clone)]
pub struct GenesisFile {
    pub genesis: Genesis,
    pub parent_hash: B256,
    pub gas_used: u64,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct HeaderExtras {
    #[serde(default)]
    parent_hash: Option<B256>,
    #[serde(default)]
    gas_used: Option<alloy_primitives::U64>,
}

pub fn load_genesis(path: &Path) -> Result<GenesisFile, Error> {
    let bytes = read_file(path)?;
    parse_genesis(&bytes).map_err(|e| Error::Io(format!("{}: {e}", path.display())))
}

pub fn parse_genesis(bytes: &[u8]) -> Result<GenesisFile, String> {
    let genesis: Genesis = serde_json::from_slice(bytes).map_err(|e| format!("not a genesis.json: {e}"))?;
    let extras: HeaderExtras = serde_json::from_slice(bytes).map_err(|e| format!("not a genesis.json: {e}"))?;
    Ok(GenesisFile {
        genesis,
        parent_hash: extras.parent_hash.unwrap_or_default(),
        gas_used: extras.gas_used.map(|g| g.to::<u64>()).unwrap_or_default(),
    })
}

/// The genesis state: its block header and every preimage (trie nodes, code) a
/// `TrieDBProvider` must serve to execute on top of it.
#[derive(Debug, Clone)]
pub struct GenesisState {
    pub header: Sealed<Header>,
    pub nodes: HashMap<B256, Bytes>,
    pub code: HashMap<B256, Bytes>,
    pub message_passer_storage_root: B256,
}

/// Stores the RLP of every open node of `node` by its keccak (the root always, children
/// whichever are referenced by hash; storing the short ones too is harmless).
pub fn collect_nodes(node: &TrieNode, nodes: &mut HashMap<B256, Bytes>) {
    match node {
        TrieNode::Empty | TrieNode::Blinded { .. } => return,
        TrieNode::Leaf { .. } => {}
        TrieNode::Extension { node: child, .. } => collect_nodes(child, nodes),
        TrieNode::Branch { stack } => stack.iter().for_each(|child| collect_nodes(child, nodes)),
    }
    let rlp = alloy_rlp::encode(node);
    nodes.insert(keccak256(&rlp), rlp.into());
}

fn insert(trie: &mut TrieNode, key: B256, value: Vec<u8>) -> Result<(), Error> {
    trie.insert(&Nibbles::unpack(key), value.into(), &NoopTrieProvider)
        .map_err(|e| Error::Io(format!("trie insert: {e}")))
}

/// Builds the genesis block and state from the alloc, as op-geth does:
/// - state root of the alloc (storage slots with a zero value are left out);
/// - Canyon: withdrawals root, the storage root of L2ToL1MessagePasser (0x4200..0016) when
///   Isthmus is active at genesis (Isthmus exec-engine spec), else the empty root;
/// - Ecotone (Cancun): blob gas used / excess blob gas 0, parent beacon block root 0x00..;
/// - Isthmus (Prague): requests hash = EMPTY_REQUESTS_HASH;
/// - base fee = `baseFeePerGas` (1 gwei if absent).
pub fn build_genesis(file: &GenesisFile, cfg: &RollupConfig) -> Result<GenesisState, Error> {
    let genesis = &file.genesis;
    let mut nodes = HashMap::new();
    let mut code = HashMap::new();
    let mut accounts = TrieNode::Empty;
    let mut message_passer_storage_root = EMPTY_ROOT_HASH;
    for (address, account) in &genesis.alloc {
        let mut storage = TrieNode::Empty;
        for (slot, value) in account.storage.iter().flatten() {
            let value = U256::from_be_bytes(value.0);
            if value.is_zero() {
                continue;
            }
            insert(&mut storage, keccak256(slot), alloy_rlp::encode(value))?;
        }
        let storage_root = storage.blind();
        collect_nodes(&storage, &mut nodes);
        if *address == Predeploys::L2_TO_L1_MESSAGE_PASSER {
            message_passer_storage_root = storage_root;
        }
        let bytecode = account.code.clone().unwrap_or_default();
        let code_hash = keccak256(&bytecode);
        code.insert(code_hash, bytecode);
        let trie_account =
            TrieAccount { nonce: account.nonce.unwrap_or_default(), balance: account.balance, storage_root, code_hash };
        insert(&mut accounts, keccak256(address), alloy_rlp::encode(trie_account))?;
    }
    let state_root = accounts.blind();
    collect_nodes(&accounts, &mut nodes);

    let time = genesis.timestamp;
    let withdrawals_root = if cfg.is_isthmus_active(time) {
        Some(message_passer_storage_root)
    } else if cfg.is_canyon_active(time) {
        Some(EMPTY_ROOT_HASH)
    } else {
        None
    };
    let cancun = cfg.is_ecotone_active(time);
    let header = Header {
        parent_hash: file.parent_hash,
        ommers_hash: EMPTY_OMMER_ROOT_HASH,
        beneficiary: genesis.coinbase,
        state_root,
        transactions_root: EMPTY_ROOT_HASH,
        receipts_root: EMPTY_ROOT_HASH,
        logs_bloom: Default::default(),
        difficulty: genesis.difficulty,
        number: genesis.number.unwrap_or_default(),
        gas_limit: genesis.gas_limit,
        gas_used: file.gas_used,
        timestamp: time,
        extra_data: genesis.extra_data.clone(),
        mix_hash: genesis.mix_hash,
        nonce: genesis.nonce.into(),
        base_fee_per_gas: Some(genesis.base_fee_per_gas.map_or(1_000_000_000, |b| b as u64)),
        withdrawals_root,
        blob_gas_used: cancun.then(|| genesis.blob_gas_used.unwrap_or_default()),
        excess_blob_gas: cancun.then(|| genesis.excess_blob_gas.unwrap_or_default()),
        parent_beacon_block_root: cancun.then_some(B256::ZERO),
        requests_hash: cfg.is_isthmus_active(time).then_some(EMPTY_REQUESTS_HASH),
    };
    Ok(GenesisState { header: header.seal_slow(), nodes, code, message_passer_storage_root })
}

/// Checks the genesis against rollup.json: the L2 genesis hash, number and time, and (Holocene at
/// genesis) the 9-byte extraData kona decodes the next block's EIP-1559 parameters from.
pub fn check_genesis(state: &GenesisState, cfg: &RollupConfig) -> Result<(), String> {
    let header = &state.header;
    let mut problems = Vec::new();
    if header.hash() != cfg.genesis.l2.hash {
        problems.push(format!("genesis hash {} != rollup.json genesis.l2.hash {}", header.hash(), cfg.genesis.l2.hash));
    }
    if header.number != cfg.genesis.l2.number {
        problems.push(format!(
            "genesis number {} != rollup.json genesis.l2.number {}",
            header.number, cfg.genesis.l2.number
        ));
    }
    if header.timestamp != cfg.genesis.l2_time {
        problems.push(format!(
            "genesis timestamp {} != rollup.json genesis.l2_time {}",
            header.timestamp, cfg.genesis.l2_time
        ));
    }
    if cfg.is_holocene_active(header.timestamp) && header.extra_data.len() != 9 {
        problems.push(format!(
            "Holocene is active at genesis but extraData is {} bytes, not 9 (version 0 | denominator u32 | elasticity u32)",
            header.extra_data.len()
        ));
    }
    if cfg.genesis.system_config.is_none() {
        problems.push("rollup.json genesis.system_config is missing".to_string());
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
}

/// The address an L1 contract deposits from on L2 (AddressAliasHelper.applyL1ToL2Alias).
pub fn alias(address: Address) -> Address {
    let offset = U256::from_be_slice(&alloy_primitives::hex!("1111000000000000000000000000000000001111"));
    let sum = U256::from_be_slice(address.as_slice()).wrapping_add(offset);
    Address::from_slice(&sum.to_be_bytes::<32>()[12..])
}
