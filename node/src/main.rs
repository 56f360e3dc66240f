//! `tephra`: the sequencer node.

mod batchlog;
mod config;
mod format;
mod metrics;
mod node;
mod replay;
mod rpc;
mod sequencer;
mod udp;
mod view;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::config::{Config, LogFormat};

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

fn run(config: Config) -> Result<(), String> {
    init_tracing(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let running = node::start(config).await.map_err(|e| e.to_string())?;
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| e.to_string())?;
        let mut watchdog = tokio::time::interval(std::time::Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = terminate.recv() => break,
                _ = watchdog.tick() => if running.sequencer_finished() { break },
            }
        }
        tracing::info!("stopping");
        running.stop().await.map_err(|e| e.to_string())
    })
}
