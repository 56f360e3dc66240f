//! `tephra init` and `tephra log verify`: a data dir's chain, made from its
//! genesis and checked against its batch log.

use std::path::PathBuf;

use tephra_node::{config::Config, node};

/// Creates the data dir for `genesis` and reports its genesis state root and hash.
pub fn init(mut config: Config, genesis: PathBuf) -> Result<String, String> {
    config.node.genesis = genesis;
    let data = node::DataDir(config.node.data_dir.clone());
    let chain = node::chain_of(&config, &data).map_err(|e| e.to_string())?;
    Ok(format!(
        "data dir:           {}\nchain id:           {}\ngenesis state root: {}\ngenesis block hash: {}",
        data.0.display(),
        chain.chain_id(),
        chain.genesis_header().state_root,
        chain.genesis_hash()
    ))
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
