//! Hyperlane interop from the command line: `tephra interop deploy` puts
//! the core contracts on any chain (tephra-interop's `deploy`) and writes
//! where they are; `tephra interop announce` submits a validator's signed
//! announcement; `tephra relay` runs the relayer (tephra-interop's
//! `relayer`) over the chains of its config.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use alloy_primitives::Address;
use alloy_sol_types::SolCall;
use tephra_hsm::{AuditedSigner, FileSigner, ValidatorGuard, ValidatorRules};
use tephra_interop::{
    Attester, CheckpointStore, Deployment, Position, Transactor,
    chain::view,
    checkpoint::Announcement,
    contracts::IValidatorAnnounce,
    deploy::deploy as deploy_contracts,
    relayer::{RelayChain, Relayer, RelayerSettings},
    rpc_follower::{FollowRpcError, follow_once},
};
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

#[derive(clap::Args, Debug)]
pub struct AnnounceArgs {
    /// The origin chain's JSON-RPC.
    #[arg(long)]
    rpc: String,
    /// The key that pays for the transaction (any funded key).
    #[arg(long)]
    key_file: PathBuf,
    /// The origin's ValidatorAnnounce.
    #[arg(long)]
    validator_announce: Address,
    /// The validator's announcement.json (in its checkpoint directory).
    #[arg(long)]
    announcement: PathBuf,
}

pub fn announce(args: &AnnounceArgs) -> Result<String, String> {
    let chain = L1JsonRpc::new(args.rpc.clone()).map_err(|e| e.to_string())?;
    let payer = FileSigner::load(&args.key_file).map_err(|e| e.to_string())?;
    announce_file(&chain, &payer, args.validator_announce, &args.announcement)
}

/// Submits the signed announcement at `path` to `validator_announce` on
/// `chain`, paid by `payer`, unless that location is announced already.
pub fn announce_file(
    chain: &L1JsonRpc,
    payer: &FileSigner,
    validator_announce: Address,
    path: &Path,
) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (announcement, signature) =
        Announcement::from_signed_json(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let call = IValidatorAnnounce::getAnnouncedStorageLocationsCall { _validators: vec![announcement.validator] };
    let announced = view(chain, validator_announce, &call).map_err(|e| e.to_string())?;
    let location = &announcement.storage_location;
    if announced.first().is_some_and(|locations| locations.contains(location)) {
        return Ok(format!("{} already announced {location}", announcement.validator));
    }
    let transactor = Transactor {
        chain,
        signer: payer,
        chain_id: chain.chain_id().map_err(|e| e.to_string())?,
        gas_max: ANNOUNCE_GAS_MAX,
        receipt_timeout: Duration::from_secs(60),
    };
    let call = IValidatorAnnounce::announceCall {
        _validator: announcement.validator,
        _storageLocation: location.clone(),
        _signature: signature.0.to_vec().into(),
    };
    transactor.send(Some(validator_announce), call.abi_encode().into()).map_err(|e| e.to_string())?;
    Ok(format!("{} announced {location}", announcement.validator))
}

/// An announcement stores a string in an array: well under this.
const ANNOUNCE_GAS_MAX: u64 = 1_000_000;

/// `relay.toml`: the relayer's key, journal and limits, and its chains.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RelayConfig {
    /// The journal's directory.
    data_dir: PathBuf,
    /// The key that pays for `Mailbox.process` on each destination.
    key_file: PathBuf,
    poll_interval_ms: u64,
    gas_max: u64,
    receipt_timeout_s: u64,
    backoff_initial_ms: u64,
    backoff_max_ms: u64,
    #[serde(default)]
    chain: Vec<RelayChainConfig>,
}

/// A process transaction's gas, at least: the intrinsic gas of any transaction.
const RELAY_GAS_MIN: u64 = 21_000;
/// The longest a relayer may wait between polls or retries: an hour.
const RELAY_WAIT_MS_MAX: u64 = 3_600_000;

impl RelayConfig {
    /// Each number within its range, and at least one chain.
    fn check(&self) -> Result<(), String> {
        let ranges = [
            ("poll_interval_ms", self.poll_interval_ms, 1..=RELAY_WAIT_MS_MAX),
            ("gas_max", self.gas_max, RELAY_GAS_MIN..=u64::from(u32::MAX)),
            ("receipt_timeout_s", self.receipt_timeout_s, 1..=RELAY_WAIT_MS_MAX / 1000),
            ("backoff_initial_ms", self.backoff_initial_ms, 1..=RELAY_WAIT_MS_MAX),
            ("backoff_max_ms", self.backoff_max_ms, self.backoff_initial_ms..=RELAY_WAIT_MS_MAX),
        ];
        for (key, value, range) in ranges {
            if !range.contains(&value) {
                return Err(format!("{key} = {value}: must be in {range:?}"));
            }
        }
        if self.chain.is_empty() {
            return Err("no [[chain]]: the relayer serves the chains it is given".into());
        }
        Ok(())
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RelayChainConfig {
    name: String,
    rpc: String,
    /// What `tephra interop deploy` wrote for this chain.
    deployment: PathBuf,
    #[serde(default)]
    confirmations: u64,
}

/// `tephra relay --config`: polls and delivers until killed; the journal
/// makes a kill at any moment safe.
pub fn relay(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let config: RelayConfig = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    config.check().map_err(|e| format!("{}: {e}", path.display()))?;
    init_relay_tracing();
    let relative = |p: &Path| path.parent().unwrap_or(Path::new(".")).join(p);
    let mut chains = Vec::new();
    for chain in &config.chain {
        let deployment_path = relative(&chain.deployment);
        let deployment: Deployment = std::fs::read_to_string(&deployment_path)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
            .map_err(|e| format!("chain {}: {}: {e}", chain.name, deployment_path.display()))?;
        let rpc = L1JsonRpc::new(chain.rpc.clone()).map_err(|e| e.to_string())?;
        chains.push(RelayChain {
            name: chain.name.clone(),
            rpc: Box::new(rpc),
            deployment,
            confirmations: chain.confirmations,
        });
    }
    let signer = FileSigner::load(&relative(&config.key_file)).map_err(|e| e.to_string())?;
    let settings = RelayerSettings {
        gas_max: config.gas_max,
        receipt_timeout: Duration::from_secs(config.receipt_timeout_s),
        backoff_initial_ms: config.backoff_initial_ms,
        backoff_max_ms: config.backoff_max_ms,
    };
    let mut relayer =
        Relayer::open(chains, Box::new(signer), settings, &relative(&config.data_dir)).map_err(|e| e.to_string())?;
    tracing::info!(pending = relayer.pending(), "the relayer starts");
    loop {
        let report = relayer.poll().map_err(|e| e.to_string())?;
        for id in &report.delivered {
            tracing::info!(%id, "delivered");
        }
        std::thread::sleep(Duration::from_millis(config.poll_interval_ms));
    }
}

/// Logs to stderr, at RUST_LOG's level (info by default).
fn init_relay_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// The origin chain's JSON-RPC.
    #[arg(long)]
    rpc: String,
    /// What `tephra interop deploy` wrote for the origin.
    #[arg(long)]
    deployment: PathBuf,
    /// The validator key: a file of 32 hex-encoded bytes.
    #[arg(long)]
    key_file: PathBuf,
    /// Where its checkpoints (DIR/checkpoints, announced as file://),
    /// guard, audit log and state go.
    #[arg(long)]
    dir: PathBuf,
    /// Blocks below the head before an insertion is attested.
    #[arg(long, default_value_t = 0)]
    confirmations: u64,
    #[arg(long, default_value_t = 500)]
    poll_interval_ms: u64,
}

/// `tephra interop validate`: a validator of any chain over JSON-RPC,
/// until killed (its state makes a kill at any moment safe).
pub fn validate(args: &ValidateArgs) -> Result<(), String> {
    let text = std::fs::read_to_string(&args.deployment).map_err(|e| format!("{}: {e}", args.deployment.display()))?;
    let deployment: Deployment =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", args.deployment.display()))?;
    init_relay_tracing();
    std::fs::create_dir_all(&args.dir).map_err(|e| format!("{}: {e}", args.dir.display()))?;
    let key = FileSigner::load(&args.key_file).map_err(|e| e.to_string())?;
    let audited = AuditedSigner::open(key, &args.dir.join("validator-audit.log")).map_err(|e| e.to_string())?;
    let rules = ValidatorRules {
        origin: deployment.domain,
        merkle_tree_hook: deployment.merkle_tree_hook.into_word(),
        mailbox: deployment.mailbox.into_word(),
    };
    let guard = ValidatorGuard::open(audited, rules, &args.dir.join("validator.guard")).map_err(|e| e.to_string())?;
    let store = CheckpointStore::open(&args.dir.join("checkpoints")).map_err(|e| e.to_string())?;
    let start = Position { block: deployment.deployed_block, txs_read: 0, anchor: None };
    let state = args.dir.join("validator.state");
    let mut attester =
        Attester::open(deployment.domain, deployment.merkle_tree_hook, start, store, Box::new(guard), &state)
            .map_err(|e| e.to_string())?;
    attester.announce(deployment.mailbox, concat!("tephra-", env!("CARGO_PKG_VERSION"))).map_err(|e| e.to_string())?;
    let chain = L1JsonRpc::new(args.rpc.clone()).map_err(|e| e.to_string())?;
    tracing::info!(domain = deployment.domain, "the validator starts");
    loop {
        match follow_once(&chain, &mut attester, deployment.merkle_tree_hook, args.confirmations) {
            Ok(0) => std::thread::sleep(Duration::from_millis(args.poll_interval_ms)),
            Ok(signed) => tracing::info!(signed, count = attester.count(), "checkpoints signed"),
            Err(FollowRpcError::Chain(error)) => {
                tracing::warn!(%error, "the origin does not answer; trying again");
                std::thread::sleep(Duration::from_millis(args.poll_interval_ms));
            }
            // The key, the store or the state failed, or the tree does not go on.
            Err(error) => return Err(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "data_dir = \"relay\"\nkey_file = \"k\"\npoll_interval_ms = 100\ngas_max = 3000000\n\
                        receipt_timeout_s = 60\nbackoff_initial_ms = 200\nbackoff_max_ms = 2000\n";

    fn config(extra: &str) -> Result<(), String> {
        let config: RelayConfig = toml::from_str(&format!("{BASE}{extra}")).map_err(|e| e.to_string())?;
        config.check()
    }

    #[test]
    fn a_relay_config_out_of_range_is_refused_naming_the_key() {
        let chain = "[[chain]]\nname = \"a\"\nrpc = \"http://127.0.0.1:8545\"\ndeployment = \"a.json\"\n";
        config(chain).unwrap();
        assert!(config("").unwrap_err().contains("no [[chain]]"));
        let text = |key: &str, value: &str| {
            let lines: Vec<String> = BASE
                .lines()
                .map(
                    |line| if line.starts_with(&format!("{key} =")) { format!("{key} = {value}") } else { line.into() },
                )
                .collect();
            let config: RelayConfig = toml::from_str(&(lines.join("\n") + "\n" + chain)).unwrap();
            config.check().unwrap_err()
        };
        assert!(text("poll_interval_ms", "0").contains("poll_interval_ms"));
        assert!(text("gas_max", "100").contains("gas_max"));
        assert!(text("backoff_max_ms", "100").contains("backoff_max_ms"));
        let unknown: Result<RelayConfig, _> = toml::from_str("gas = 1\n");
        assert!(unknown.is_err(), "an unknown key is refused");
    }
}
