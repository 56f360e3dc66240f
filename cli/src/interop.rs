//! `tephra interop ...`: Hyperlane interop from the command line. `deploy`
//! puts the core contracts on any chain (tephra-interop's `deploy`), signed
//! by a key file, and writes where they are.

use std::{path::PathBuf, time::Duration};

use alloy_primitives::Address;
use tephra_hsm::FileSigner;
use tephra_interop::{Transactor, deploy::deploy as deploy_contracts};
use tephra_l1::{L1BatcherRpc, L1JsonRpc};

#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    /// The chain's JSON-RPC (http://, https://, ws://, wss://).
    #[arg(long)]
    rpc: String,
    /// The deployer's private key: a file of 32 hex-encoded bytes. It pays
    /// for the deployment and owns the Mailbox.
    #[arg(long)]
    key_file: PathBuf,
    /// The chain's Hyperlane domain (by custom its chain id).
    #[arg(long)]
    domain: u32,
    /// The ISM's validators, comma-separated addresses.
    #[arg(long, value_delimiter = ',', required = true)]
    validators: Vec<Address>,
    /// How many of the validators must sign a checkpoint.
    #[arg(long)]
    threshold: u8,
    /// Where the deployment's JSON goes.
    #[arg(long)]
    out: Option<PathBuf>,
    /// No transaction may use more gas than this.
    #[arg(long, default_value_t = 10_000_000)]
    gas_max: u64,
    /// How long each transaction may take to be mined.
    #[arg(long, default_value_t = 60)]
    receipt_timeout_s: u64,
}

pub fn deploy(args: &DeployArgs) -> Result<String, String> {
    let chain = L1JsonRpc::new(args.rpc.clone()).map_err(|e| e.to_string())?;
    let signer = FileSigner::load(&args.key_file).map_err(|e| e.to_string())?;
    let transactor = Transactor {
        chain: &chain,
        signer: &signer,
        chain_id: chain.chain_id().map_err(|e| e.to_string())?,
        gas_max: args.gas_max,
        receipt_timeout: Duration::from_secs(args.receipt_timeout_s),
    };
    let deployment =
        deploy_contracts(&transactor, args.domain, &args.validators, args.threshold).map_err(|e| e.to_string())?;
    let json = serde_json::to_string_pretty(&deployment).map_err(|e| e.to_string())?;
    if let Some(out) = &args.out {
        std::fs::write(out, &json).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    Ok(json)
}
