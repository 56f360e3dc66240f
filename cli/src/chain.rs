//! `tephra init` and `tephra log verify`: a data dir's chain, made from its
//! genesis and checked against its batch log.

use std::path::PathBuf;

use tephra_node::{config::Config, node};

/// Creates the data dir for `genesis` (and an OP Stack chain's
/// `rollup_config`, checked against it) and reports its genesis state root
/// and hash.
pub fn init(mut config: Config, genesis: PathBuf, rollup_config: Option<PathBuf>) -> Result<String, String> {
    config.node.genesis = genesis;
    if let Some(path) = rollup_config {
        config.node.rollup_config = path;
    }
    let data = node::DataDir(config.node.data_dir.clone());
    let chain = node::chain_of(&config, &data).map_err(|e| e.to_string())?;
    let rollup = node::rollup_of(&config, &data, &chain).map_err(|e| e.to_string())?;
    let mut report = format!(
        "data dir:           {}\nchain id:           {}\ngenesis state root: {}\ngenesis block hash: {}",
        data.0.display(),
        chain.chain_id(),
        chain.genesis_header().state_root,
        chain.genesis_hash()
    );
    if let Some(rollup) = rollup {
        report += &format!(
            "\nOP Stack chain:     rollup.json agrees (L1 chain id {}, L1 genesis block {} {}, block time {} s)",
            rollup.l1_chain_id, rollup.genesis.l1.number, rollup.genesis.l1.hash, rollup.block_time
        );
    }
    Ok(report)
}

/// Re-executes the whole batch log from genesis and reports its head.
pub fn verify_log(config: &Config) -> Result<String, String> {
    crate::run::init_tracing(config);
    let replayed = node::verify_log(config).map_err(|e| e.to_string())?;
    let head = replayed.blocks.back().expect("genesis");
    Ok(format!(
        "verified {} blocks re-executed, {} signatures checked\nhead {} {} state root {}",
        replayed.executed_blocks, replayed.signatures_checked, head.header.number, head.hash, head.header.state_root
    ))
}
