//! `tephra`: the sequencer node's command line.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use tephra_node::{
    config::{Config, LogFormat},
    hsm_cli, node,
};

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
        /// A geth-style genesis.json.
        #[arg(long)]
        genesis: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Work with the batch log.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Work with the block key.
    Hsm {
        #[command(subcommand)]
        command: HsmCommand,
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
    /// Prepare the host for the dataplane, as [host], [net] and [topology] ask.
    Configure {
        /// check (unprivileged; fails listing what is missing), init (root) or fini.
        #[arg(value_parser = ["check", "init", "fini"])]
        verb: String,
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
    /// Create the block key where [signer] points (file, PKCS#11 token or YubiHSM).
    Keygen,
    /// Print the block key's address.
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

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.node.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal; journald and files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match config.node.log_format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[allow(clippy::print_stdout, reason = "the CLI reports its results on stdout")]
fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => Config::load(config.as_deref()).map_err(|e| e.to_string()).and_then(run),
        Command::Init { genesis, config } => {
            Config::load(config.as_deref()).map_err(|e| e.to_string()).and_then(|mut config| {
                config.node.genesis = genesis;
                let data = node::DataDir(config.node.data_dir.clone());
                let chain = node::chain_of(&config, &data).map_err(|e| e.to_string())?;
                println!("data dir:           {}", data.0.display());
                println!("chain id:           {}", chain.chain_id());
                println!("genesis state root: {}", chain.genesis_header().state_root);
                println!("genesis block hash: {}", chain.genesis_hash());
                Ok(())
            })
        }
        Command::Hsm { command, config } => {
            Config::load(config.as_deref()).map_err(|e| e.to_string()).and_then(|config| {
                let report = match command {
                    HsmCommand::Keygen => hsm_cli::keygen(&config),
                    HsmCommand::Pubkey => hsm_cli::pubkey(&config),
                    HsmCommand::Selftest => hsm_cli::selftest(&config),
                    HsmCommand::Audit { command: AuditCommand::Verify } => hsm_cli::audit_verify(&config),
                }?;
                println!("{report}");
                Ok(())
            })
        }
        Command::Configure { verb, config } => Config::load(config.as_deref())
            .map_err(|e| e.to_string())
            .and_then(|config| tephra_node::host::run(&config, &verb))
            .map(|report| println!("{report}")),
        Command::Ready { config, wait_s } => {
            Config::load(config.as_deref()).map_err(|e| e.to_string()).and_then(|config| {
                let answer = node::ask_ready(&config, std::time::Duration::from_secs(wait_s))?;
                println!("{answer}");
                Ok(())
            })
        }
        Command::Ha { command, config } => {
            Config::load(config.as_deref()).map_err(|e| e.to_string()).and_then(|config| {
                let report = match command {
                    HaCommand::Status => tephra_node::ha::status(&config),
                    HaCommand::StepDown => tephra_node::ha::step_down(&config),
                }?;
                print!("{report}");
                if !report.ends_with('\n') {
                    println!();
                }
                Ok(())
            })
        }
        Command::Update { command: UpdateCommand::Apply { bundle, tries }, esp } => update_apply(&bundle, &esp, tries),
        Command::Update { command: UpdateCommand::Rollback, esp } => update_rollback(&esp),
        Command::Update { command: UpdateCommand::Status, esp } => {
            tephra_image::Status::read(&esp).map(|status| print!("{status}")).map_err(|e| e.to_string())
        }
        Command::VerifyPreconf { rpc, tx, signer } => {
            hsm_cli::verify_preconf(&rpc, tx, signer).map(|report| println!("{report}"))
        }
        Command::VerifyBlock { rpc, block, signer } => {
            let block = match block.parse::<u64>() {
                Ok(number) => format!("{number:#x}"),
                Err(_) => block,
            };
            hsm_cli::verify_block(&rpc, &block, signer).map(|report| println!("{report}"))
        }
        Command::Log { command: LogCommand::Verify { config } } => {
            Config::load(config.as_deref()).map_err(|e| e.to_string()).and_then(|config| {
                init_tracing(&config);
                let replayed = node::verify_log(&config).map_err(|e| e.to_string())?;
                let head = replayed.blocks.back().expect("genesis");
                println!(
                    "verified {} blocks re-executed, {} signatures checked",
                    replayed.executed_blocks, replayed.signatures_checked
                );
                println!("head {} {} state root {}", head.header.number, head.hash, head.header.state_root);
                Ok(())
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("tephra: {message}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout, reason = "the CLI reports its results on stdout")]
fn update_apply(bundle: &std::path::Path, esp: &std::path::Path, tries: u32) -> Result<(), String> {
    use tephra_image::disk::BootDisk;
    let disk = BootDisk::discover().map_err(|e| e.to_string())?;
    let target = disk.update_target().map_err(|e| e.to_string())?;
    let running = tephra_image::disk::booted_roothash().map_err(|e| e.to_string())?;
    println!(
        "writing {} into slot {} ({})",
        bundle.display(),
        disk.running.other().letter(),
        target.root.device.display()
    );
    let applied = tephra_image::apply(bundle, &target, esp, &running, tries).map_err(|e| e.to_string())?;
    for retired in &applied.retired {
        println!("retired {retired}");
    }
    println!("installed {} (version {}, roothash {}): it boots next", applied.uki, applied.version, applied.roothash);
    Ok(())
}

#[allow(clippy::print_stdout, reason = "the CLI reports its results on stdout")]
fn update_rollback(esp: &std::path::Path) -> Result<(), String> {
    let (marked, next) =
        tephra_image::rollback(esp, &tephra_image::disk::booted_roothash().map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    println!("marked {marked} bad; {next} boots at the next reboot");
    Ok(())
}

fn run(config: Config) -> Result<(), String> {
    init_tracing(&config);
    // The runtime's workers verify transactions and serve JSON-RPC: the
    // verify cores of the placement.
    let (_, placement) = node::placement(&config).map_err(|e| e.to_string())?;
    let verify_cores = placement.verify;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(verify_cores.len())
        .on_thread_start(move || tephra_dataplane::topology::pin_current_thread(&verify_cores))
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let running = node::start(config).await.map_err(|e| e.to_string())?;
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| e.to_string())?;
        let mut service = ServiceNotifications::new();
        let mut watchdog = tokio::time::interval(std::time::Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = terminate.recv() => break,
                _ = watchdog.tick() => {
                    if running.sequencer_finished() { break }
                    service.tick(&running);
                }
            }
        }
        tracing::info!("stopping");
        service.send("STOPPING=1");
        let deposed = running.deposed();
        running.stop().await.map_err(|e| e.to_string())?;
        // A deposed leader exits failed, so that its service restarts it to
        // rejoin as a standby.
        deposed.map_or(Ok(()), |reason| Err(format!("{reason}; restart to rejoin")))
    })
}

/// What systemd hears from a `Type=notify` tephra.service: READY=1 the first
/// time the node is ready (the service is active only then), STATUS=
/// whenever readiness changes, and
/// WATCHDOG=1 only while the sequencer loop turns.
struct ServiceNotifications {
    notifier: Option<tephra_node::systemd::Notifier>,
    watchdog_interval: Option<std::time::Duration>,
    last_ping: std::time::Instant,
    last_heartbeat: u64,
    told_ready: bool,
    status: Option<Option<String>>,
}

impl ServiceNotifications {
    fn new() -> Self {
        let notifier = tephra_node::systemd::Notifier::from_env().unwrap_or_else(|error| {
            tracing::warn!(%error, "NOTIFY_SOCKET is set but unusable: systemd will not hear readiness");
            None
        });
        Self {
            watchdog_interval: notifier.as_ref().and(tephra_node::systemd::watchdog_interval()),
            notifier,
            last_ping: std::time::Instant::now(),
            last_heartbeat: 0,
            told_ready: false,
            status: None,
        }
    }

    fn tick(&mut self, running: &node::Running) {
        if self.notifier.is_none() {
            return;
        }
        let not_ready = running.not_ready();
        if self.status.as_ref() != Some(&not_ready) {
            let status = match &not_ready {
                None if !self.told_ready => {
                    self.told_ready = true;
                    "READY=1\nSTATUS=ready".to_string()
                }
                None => "STATUS=ready".to_string(),
                Some(reason) => format!("STATUS=not ready: {reason}"),
            };
            self.send(&status);
            self.status = Some(not_ready);
        }
        if let Some(interval) = self.watchdog_interval
            && self.last_ping.elapsed() >= interval
        {
            let heartbeat = running.heartbeat();
            if heartbeat != self.last_heartbeat {
                self.send("WATCHDOG=1");
                self.last_heartbeat = heartbeat;
                self.last_ping = std::time::Instant::now();
            }
        }
    }

    fn send(&self, state: &str) {
        if let Some(notifier) = &self.notifier
            && let Err(error) = notifier.notify(state)
        {
            tracing::warn!(%error, state, "notifying systemd");
        }
    }
}
