//! `tephra`: the sequencer node's command line. This file holds the
//! commands and their arguments; each group's work is its module's.

mod chain;
mod configure;
mod devnet;
mod devnet_interop;
mod ha;
mod hsm;
mod interop;
mod ready;
mod run;
mod systemd;
mod topology;
mod update;
mod verify;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use tephra_node::config::Config;

/// revm allocates per transaction: mimalloc is faster there than the system
/// allocator and scales across exec shards (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "tephra", version, about = "A low-latency Ethereum-compatible sequencer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the sequencer (embedded defaults: dev genesis, file signer, ./data).
    Run {
        /// A TOML file overriding any keys of config/default.toml.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Create a data dir for a genesis file and print its genesis state root and hash.
    Init {
        /// A geth-style genesis.json (op-geth's for an OP Stack chain).
        #[arg(long)]
        genesis: PathBuf,
        /// An OP Stack chain's op-node rollup.json, checked against the genesis.
        #[arg(long)]
        rollup_config: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Try the OP Stack mode: a local L1 (anvil), a deposit contract, a
    /// genesis and rollup config written for them, and tephra sequencing
    /// the chain in OP mode (README.md, "OP Stack devnet").
    Devnet {
        /// Where the files and the data dir go.
        #[arg(long, default_value = "./devnet")]
        dir: PathBuf,
        /// An anvil already running (its first account unlocked); by
        /// default one is started from node_modules.
        #[arg(long)]
        l1_rpc: Option<String>,
        /// The port of the anvil started.
        #[arg(long, default_value_t = 8546)]
        l1_port: u16,
        /// Deploy and write the files, then exit without running the node.
        #[arg(long, conflicts_with = "interop")]
        setup_only: bool,
        /// Two L2 chains on the L1 with Hyperlane's contracts, each node
        /// the validator of its chain, a relayer between them, and a
        /// message sent across (docs/interop.md).
        #[arg(long)]
        interop: bool,
        /// A TOML file overriding keys of config/default.toml ([rpc] listen, ...).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Work with the batch log.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Work with the block key, or with --key batcher the batcher key.
    Hsm {
        #[command(subcommand)]
        command: HsmCommand,
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        /// Which key: the block key ([signer]), the batcher key
        /// ([batcher.key]) or the Hyperlane validator key ([interop.key]).
        #[arg(long, global = true, value_enum, default_value = "block")]
        key: hsm::Role,
    },
    /// Prepare the host for the dataplane, as [host], [net] and [topology] ask.
    Configure {
        /// check (unprivileged; fails listing what is missing), init (root) or fini.
        #[arg(value_parser = ["check", "init", "fini"])]
        verb: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the node's threads and the queues between them, with their cores and depths, for a config.
    Topology {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Ask the running node whether it is ready (its /ready); exit 0 only if so.
    Ready {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Keep asking for up to this long.
        #[arg(long, default_value_t = 0)]
        wait_s: u64,
    },
    /// A/B updates of the appliance image (docs/operators.md).
    Update {
        #[command(subcommand)]
        command: UpdateCommand,
        /// Where the ESP is mounted.
        #[arg(long, global = true, default_value = "/efi")]
        esp: PathBuf,
    },
    /// A high-availability pair (docs/operators.md).
    Ha {
        #[command(subcommand)]
        command: HaCommand,
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
    /// Hyperlane interop (docs/interop.md).
    Interop {
        #[command(subcommand)]
        command: InteropCommand,
    },
    /// Carry Hyperlane messages between the chains of a relay config
    /// (docs/interop.md): a process of its own, its queue durable.
    Relay {
        #[arg(long)]
        config: PathBuf,
    },
    /// Fetch a transaction's preconfirmation over JSON-RPC and check it back to the block key.
    VerifyPreconf {
        #[arg(long, default_value = "http://127.0.0.1:8545")]
        rpc: String,
        /// The transaction hash.
        #[arg(long)]
        tx: alloy_primitives::B256,
        /// The block key's address; by default the one the node names.
        #[arg(long)]
        signer: Option<alloy_primitives::Address>,
    },
    /// Fetch a block over JSON-RPC and check its hash and its signature.
    VerifyBlock {
        /// JSON-RPC endpoint.
        #[arg(long, default_value = "http://127.0.0.1:8545")]
        rpc: String,
        /// Block number (decimal or 0x-hex) or tag (latest, finalized, ...).
        #[arg(long, default_value = "finalized")]
        block: String,
        /// The block key's address; by default the one the node names.
        #[arg(long)]
        signer: Option<alloy_primitives::Address>,
    },
}

#[derive(Subcommand, Debug)]
enum InteropCommand {
    /// Deploy Hyperlane's core contracts (the pinned npm release's code) on
    /// any chain: Mailbox, MerkleTreeHook, a MessageIdMultisigIsm of the
    /// validators, ValidatorAnnounce and a TestRecipient. Prints where they
    /// are as JSON, and writes it to --out.
    Deploy(interop::DeployArgs),
    /// Submit a validator's signed announcement (its announcement.json) to
    /// the origin's ValidatorAnnounce, so that relayers find its
    /// checkpoints. Anyone may pay for it; the signature is the validator's.
    Announce(interop::AnnounceArgs),
    /// A Hyperlane validator of any chain over JSON-RPC (a process of its
    /// own; tephra's own chain has the node's `[interop] validator` role):
    /// signs each checkpoint of the origin's MerkleTreeHook into DIR.
    Validate(interop::ValidateArgs),
}

#[derive(Subcommand, Debug)]
enum HaCommand {
    /// The leader, its epoch, and each node's role, log length and lag (from etcd).
    Status,
    /// Make the leader give up its lease now: a caught-up standby takes over,
    /// the old leader restarts as a standby.
    StepDown,
}

#[derive(Subcommand, Debug)]
enum UpdateCommand {
    /// Write an update bundle (tephra-<version>.update, a file or a block
    /// device) into the slot that is not running and boot it next; it falls
    /// back by itself unless it comes up ready within `tries` boots.
    Apply {
        bundle: PathBuf,
        #[arg(long, default_value_t = 3)]
        tries: u32,
    },
    /// Boot the other slot's image next (it must not be bad): the running
    /// image is marked bad. Takes effect at the next reboot.
    Rollback,
    /// The running slot and version, and each installed image's boot state.
    Status,
}

#[derive(Subcommand, Debug)]
enum HsmCommand {
    /// Create the key where [signer] (or [batcher.key]) points (file, PKCS#11 token or YubiHSM).
    Keygen,
    /// Print the key's address.
    Pubkey,
    /// Sign a random challenge, verify it, print the latency.
    Selftest,
    /// The signing audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Check the hash chain and every signature.
    Verify,
}

#[derive(Subcommand, Debug)]
enum LogCommand {
    /// Re-execute the whole log from genesis, checking every root, hash and signature.
    Verify {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// The config `path` names, over the embedded defaults.
fn load(path: Option<PathBuf>) -> Result<Config, String> {
    Config::load(path.as_deref()).map_err(|e| e.to_string())
}

#[allow(clippy::print_stdout, reason = "the CLI reports its results on stdout")]
fn print_line(report: String) {
    println!("{report}");
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Run { config } => load(config).and_then(run::run),
        Command::Init { genesis, rollup_config, config } => {
            load(config).and_then(|config| chain::init(config, genesis, rollup_config)).map(print_line)
        }
        Command::Devnet { dir, l1_rpc, l1_port, setup_only, interop, config } => load(config).and_then(|config| {
            devnet::devnet(config, devnet::DevnetArgs { dir, l1_rpc, l1_port, setup_only, interop })
        }),
        Command::Log { command: LogCommand::Verify { config } } => {
            load(config).and_then(|config| chain::verify_log(&config)).map(print_line)
        }
        Command::Hsm { command, config, key } => {
            load(config).and_then(|config| hsm_command(&config, command, key)).map(print_line)
        }
        Command::Configure { verb, config } => {
            load(config).and_then(|config| configure::run(&config, &verb)).map(print_line)
        }
        Command::Interop { command: InteropCommand::Deploy(args) } => interop::deploy(&args).map(print_line),
        Command::Interop { command: InteropCommand::Announce(args) } => interop::announce(&args).map(print_line),
        Command::Interop { command: InteropCommand::Validate(args) } => interop::validate(&args),
        Command::Relay { config } => interop::relay(&config),
        Command::Topology { config } => load(config).and_then(|config| topology::show(&config)).map(print_line),
        Command::Ready { config, wait_s } => {
            load(config).and_then(|config| ready::ask_ready(&config, Duration::from_secs(wait_s))).map(print_line)
        }
        Command::Ha { command, config } => load(config).and_then(|config| ha_command(&config, command)),
        Command::Update { command, esp } => update_command(command, &esp),
        Command::VerifyPreconf { rpc, tx, signer } => verify::verify_preconf(&rpc, tx, signer).map(print_line),
        Command::VerifyBlock { rpc, block, signer } => verify::verify_block(&rpc, &block, signer).map(print_line),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("tephra: {message}");
            ExitCode::FAILURE
        }
    }
}

fn hsm_command(config: &Config, command: HsmCommand, role: hsm::Role) -> Result<String, String> {
    match command {
        HsmCommand::Keygen => hsm::keygen(config, role),
        HsmCommand::Pubkey => hsm::pubkey(config, role),
        HsmCommand::Selftest => hsm::selftest(config, role),
        HsmCommand::Audit { command: AuditCommand::Verify } => hsm::audit_verify(config, role),
    }
}

/// A status report ends with its own newline; a one-line answer gets one.
#[allow(clippy::print_stdout, reason = "the CLI reports its results on stdout")]
fn ha_command(config: &Config, command: HaCommand) -> Result<(), String> {
    let report = match command {
        HaCommand::Status => ha::status(config),
        HaCommand::StepDown => ha::step_down(config),
    }?;
    print!("{report}");
    if !report.ends_with('\n') {
        println!();
    }
    Ok(())
}

fn update_command(command: UpdateCommand, esp: &std::path::Path) -> Result<(), String> {
    match command {
        UpdateCommand::Apply { bundle, tries } => update::apply(&bundle, esp, tries),
        UpdateCommand::Rollback => update::rollback(esp),
        UpdateCommand::Status => update::status(esp),
    }
}
