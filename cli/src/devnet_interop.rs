//! `tephra devnet --interop`: two tephra chains on one L1, talking through
//! Hyperlane, in one command.
//!
//! ```text
//!  anvil (L1) ── chain 901 (DIR)          ── chain 902 (DIR/second)
//!                  tephra run                  tephra run
//!                  Mailbox, hook, ISM{902's validator}, ...   Mailbox, hook, ISM{901's validator}, ...
//!                  [interop] validator (its own key)          [interop] validator (its own key)
//!                     └─ DIR/data/hyperlane-checkpoints          └─ DIR/second/data/hyperlane-checkpoints
//!  tephra relay --config DIR/relay.toml: 901 <-> 902
//!  "hello from chain 901": Mailbox.dispatch on 901 ─> TestRecipient on 902
//! ```
//!
//! Every part is the one an operator runs: the nodes and the relayer are
//! processes of this binary, the contracts are deployed with `tephra
//! interop deploy`'s code, the announcements are submitted as `tephra
//! interop announce` does. Each chain's domain is its chain id.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use alloy_primitives::{Address, Bytes};
use alloy_sol_types::SolCall;
use tephra_exec::dev::DEV_PRIVATE_KEYS;
use tephra_hsm::{FileSigner, Signer};
use tephra_interop::{Deployment, Transactor, chain::view, contracts::IMailbox, deploy::deploy};
use tephra_l1::{L1JsonRpc, L1Rpc};
use tephra_node::config::Config;

/// The second chain's ports: the first's, this far up.
const SECOND_CHAIN_PORT_OFFSET: u16 = 1000;
/// How long a node, an announcement or the message may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// The dev keys (funded on both L2s) that deploy, relay and send.
const DEPLOYER_KEY: usize = 0;
const RELAYER_KEY: usize = 1;
const SENDER_KEY: usize = 2;
/// Each transaction of the devnet's set-up, at most.
const GAS_MAX: u64 = 10_000_000;

/// The first chain's config with every listening port moved up.
pub fn second_chain_config(config: &Config) -> Config {
    let mut second = config.clone();
    for address in [&mut second.rpc.listen, &mut second.udp.listen, &mut second.metrics.listen] {
        address.set_port(address.port() + SECOND_CHAIN_PORT_OFFSET);
    }
    second
}

/// A child process of the devnet, stopped with it.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

/// One chain of the devnet.
struct Chain {
    config_path: PathBuf,
    chain_id: u64,
    rpc_url: String,
    data_dir: PathBuf,
}

impl Chain {
    fn rpc(&self) -> Result<L1JsonRpc, String> {
        L1JsonRpc::new(self.rpc_url.clone()).map_err(|e| e.to_string())
    }

    fn start(&self) -> Result<Running, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let child = Command::new(exe)
            .args(["run", "--config"])
            .arg(&self.config_path)
            .spawn()
            .map_err(|e| format!("tephra run: {e}"))?;
        let running = Running(child);
        let rpc = self.rpc()?;
        let started = Instant::now();
        while rpc.head_number().is_err() {
            if started.elapsed() > STEP_TIMEOUT {
                return Err(format!("chain {} does not answer at {}", self.chain_id, self.rpc_url));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(running)
    }
}

/// Runs the two chains (their files written by `tephra devnet`), deploys
/// and connects them, sends a message across, and runs until stopped.
#[allow(clippy::print_stdout, reason = "the CLI reports its results on stdout")]
pub fn run(dir: &Path, chains: [(PathBuf, u64); 2]) -> Result<(), String> {
    let chains = chains.map(|(config_path, chain_id)| {
        let config = Config::load(Some(&config_path)).map_err(|e| e.to_string())?;
        let rpc_url = format!("http://{}", config.rpc.listen);
        Ok::<_, String>(Chain { config_path, chain_id, rpc_url, data_dir: config.node.data_dir })
    });
    let [first, second] = chains;
    let chains = [first?, second?];
    // Each chain's validator key, made now: the other chain's ISM names it.
    let mut validators = Vec::new();
    for chain in &chains {
        let key_file = chain.data_dir.join("hyperlane-validator.key");
        std::fs::create_dir_all(&chain.data_dir).map_err(|e| e.to_string())?;
        validators.push(FileSigner::load_or_create(&key_file).map_err(|e| e.to_string())?.0.address());
    }
    let deployer = FileSigner::from_bytes(&DEV_PRIVATE_KEYS[DEPLOYER_KEY].0).map_err(|e| e.to_string())?;
    let mut deployments = Vec::new();
    for (index, chain) in chains.iter().enumerate() {
        let node = chain.start()?;
        let rpc = chain.rpc()?;
        let transactor = transactor(&rpc, &deployer, chain.chain_id)?;
        let domain = u32::try_from(chain.chain_id).map_err(|e| e.to_string())?;
        let deployment = deploy(&transactor, domain, &[validators[1 - index]], 1).map_err(|e| e.to_string())?;
        let path = dir.join(format!("deployment-{domain}.json"));
        let json = serde_json::to_string_pretty(&deployment).map_err(|e| e.to_string())?;
        std::fs::write(&path, json).map_err(|e| format!("{}: {e}", path.display()))?;
        println!(
            "devnet: Hyperlane on chain {domain}: Mailbox {}, TestRecipient {}",
            deployment.mailbox, deployment.test_recipient
        );
        drop(node);
        append_validator_config(chain, &deployment)?;
        deployments.push(deployment);
    }
    let mut nodes = Vec::new();
    for (chain, deployment) in chains.iter().zip(&deployments) {
        nodes.push(chain.start()?);
        let announcement = chain.data_dir.join("hyperlane-checkpoints/announcement.json");
        wait_for(&format!("chain {}'s validator announcement", chain.chain_id), || announcement.exists())?;
        let said =
            crate::interop::announce_file(&chain.rpc()?, &deployer, deployment.validator_announce, &announcement)?;
        println!("devnet: chain {}'s validator {said}", chain.chain_id);
    }
    let _relayer = start_relayer(dir, &chains)?;
    send_hello(&chains, &deployments)?;
    println!("devnet: running; stop with Ctrl-C (docs/interop.md sends more)");
    wait_for_stop()?;
    // The relayer and the nodes stop as they drop; the L1 after them.
    drop(nodes);
    Ok(())
}

/// Until SIGINT or SIGTERM.
fn wait_for_stop() -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| e.to_string())?;
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(())
    })
}

fn transactor<'a>(rpc: &'a L1JsonRpc, signer: &'a FileSigner, chain_id: u64) -> Result<Transactor<'a>, String> {
    Ok(Transactor { chain: rpc, signer, chain_id, gas_max: GAS_MAX, receipt_timeout: STEP_TIMEOUT })
}

/// `[interop]` of `chain`'s node: the validator of its deployment.
fn append_validator_config(chain: &Chain, deployment: &Deployment) -> Result<(), String> {
    let mut toml = std::fs::read_to_string(&chain.config_path).map_err(|e| e.to_string())?;
    toml.push_str(&format!(
        "\n[interop]\nvalidator = true\ndomain = {}\nmailbox = \"{}\"\nmerkle_tree_hook = \"{}\"\nstart_block = {}\n",
        deployment.domain, deployment.mailbox, deployment.merkle_tree_hook, deployment.deployed_block
    ));
    std::fs::write(&chain.config_path, toml).map_err(|e| e.to_string())
}

fn start_relayer(dir: &Path, chains: &[Chain; 2]) -> Result<Running, String> {
    let key_file = dir.join("relayer.key");
    std::fs::write(&key_file, DEV_PRIVATE_KEYS[RELAYER_KEY].to_string()).map_err(|e| e.to_string())?;
    let mut toml = "data_dir = \"relay\"\nkey_file = \"relayer.key\"\npoll_interval_ms = 100\ngas_max = 3000000\n\
                    receipt_timeout_s = 60\nbackoff_initial_ms = 200\nbackoff_max_ms = 60000\n"
        .to_string();
    for chain in chains {
        toml.push_str(&format!(
            "\n[[chain]]\nname = \"{id}\"\nrpc = \"{url}\"\ndeployment = \"deployment-{id}.json\"\n",
            id = chain.chain_id,
            url = chain.rpc_url
        ));
    }
    let config = dir.join("relay.toml");
    std::fs::write(&config, toml).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let child = Command::new(exe).args(["relay", "--config"]).arg(&config).spawn().map_err(|e| e.to_string())?;
    Ok(Running(child))
}

/// "hello from chain <first>" dispatched on the first chain to the second's
/// TestRecipient, and waited for there.
#[allow(clippy::print_stdout, reason = "the CLI reports its results on stdout")]
fn send_hello(chains: &[Chain; 2], deployments: &[Deployment]) -> Result<(), String> {
    let (from, to) = (&deployments[0], &deployments[1]);
    let body = format!("hello from chain {}", from.domain);
    let call = IMailbox::dispatchCall {
        destinationDomain: to.domain,
        recipientAddress: to.test_recipient.into_word(),
        messageBody: Bytes::from(body.clone().into_bytes()),
    };
    let sender = FileSigner::from_bytes(&DEV_PRIVATE_KEYS[SENDER_KEY].0).map_err(|e| e.to_string())?;
    let origin = chains[0].rpc()?;
    let sent = Instant::now();
    let receipt = transactor(&origin, &sender, chains[0].chain_id)?
        .send(Some(from.mailbox), call.abi_encode().into())
        .map_err(|e| e.to_string())?;
    let message = receipt
        .logs
        .iter()
        .find_map(|log| tephra_interop::events::dispatched(&tephra_interop::events::as_log(log), from.mailbox))
        .ok_or("the dispatch left no Dispatch log")?
        .map_err(|e| e.to_string())?;
    let id = message.id();
    println!("devnet: message {id} dispatched on chain {}: {body:?}", from.domain);
    let destination = chains[1].rpc()?;
    wait_for("the message's delivery", || delivered(&destination, to.mailbox, id))?;
    println!(
        "devnet: message {id} delivered on chain {} to TestRecipient {} in {} ms",
        to.domain,
        to.test_recipient,
        sent.elapsed().as_millis()
    );
    Ok(())
}

fn delivered(chain: &L1JsonRpc, mailbox: Address, id: alloy_primitives::B256) -> bool {
    view(chain, mailbox, &IMailbox::deliveredCall { _id: id }).unwrap_or(false)
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> Result<(), String> {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > STEP_TIMEOUT {
            return Err(format!("{what}: not within {STEP_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
