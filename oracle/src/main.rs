//! kona-oracle CLI. stdout: one JSON line per result; stderr: human messages.
//! Exit 0: all checked; 1: a mismatch; 2: usage, file or transport error.

use kona_oracle::{
    Error,
    derive::{DeriveArgs, derive, parse_range},
    genesis::{build_genesis, check_genesis, load_genesis, load_rollup},
    verify::{VerifyArgs, verify},
};
use serde_json::json;
use std::{collections::HashMap, path::PathBuf, process::ExitCode, time::Duration};

const USAGE: &str = "usage:
  kona-oracle genesis --rollup ROLLUP.json --genesis GENESIS.json[.gz]
      builds the L2 genesis block from the alloc; fails unless its hash is rollup.json genesis.l2.hash
  kona-oracle verify --rollup ROLLUP.json --genesis GENESIS.json[.gz] --l1-rpc URL --l2-rpc URL --to N
                     [--output-roots] [--timeout SECONDS]
      derives (kona-derive) and executes (kona-executor) L2 blocks 1..=N and requires the L2 node's
      block hashes (and, with --output-roots, its optimism_outputAtBlock output roots); waits up to
      --timeout seconds (default 60) for a block not produced yet
  kona-oracle derive --rollup ROLLUP.json --genesis GENESIS.json[.gz] --l1-rpc URL --l2-rpc URL --to N
                     [--timeout SECONDS] [--expect-deposit-only FROM..=TO]
      derives L2 blocks 1..=N from the L1 alone (kona-derive's pipeline over the batcher's
      transactions; kona-executor) and requires the L2 node's block hashes; waits up to --timeout
      seconds (default 60) for L1 data or a block not produced yet. With --expect-deposit-only,
      blocks FROM..=TO must be derived deposit-only and differ from the L2 node's, and later
      blocks are derived without comparing";

fn parse(args: &[String], flags: &[&str], switches: &[&str]) -> Result<(HashMap<String, String>, Vec<String>), String> {
    let mut values = HashMap::new();
    let mut set = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (arg, None),
        };
        if switches.contains(&name) && inline.is_none() {
            set.push(name.to_string());
        } else if flags.contains(&name) {
            let value = match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    args.get(i).cloned().ok_or_else(|| format!("{name} needs a value"))?
                }
            };
            values.insert(name.to_string(), value);
        } else {
            return Err(format!("unknown argument {arg}"));
        }
        i += 1;
    }
    Ok((values, set))
}

fn required(values: &HashMap<String, String>, name: &str) -> Result<String, String> {
    values.get(name).cloned().ok_or_else(|| format!("{name} is required"))
}

/// `--timeout SECONDS` (default 60).
fn timeout(values: &HashMap<String, String>) -> Result<Duration, String> {
    let Some(text) = values.get("--timeout") else { return Ok(Duration::from_secs(60)) };
    text.parse::<f64>()
        .ok()
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .ok_or_else(|| format!("--timeout {text}: not a number of seconds"))
}

fn run(args: &[String]) -> Result<(), Error> {
    let usage = |e: String| Error::Io(format!("{e}\n{USAGE}"));
    match args.first().map(String::as_str) {
        Some("genesis") => {
            let (values, _) = parse(&args[1..], &["--rollup", "--genesis"], &[]).map_err(usage)?;
            let cfg = load_rollup(&PathBuf::from(required(&values, "--rollup").map_err(usage)?))?;
            let state =
                build_genesis(&load_genesis(&PathBuf::from(required(&values, "--genesis").map_err(usage)?))?, &cfg)?;
            let checked = check_genesis(&state, &cfg);
            println!(
                "{}",
                json!({
                    "genesis_hash": state.header.hash(),
                    "expected": cfg.genesis.l2.hash,
                    "number": state.header.number,
                    "timestamp": state.header.timestamp,
                    "state_root": state.header.state_root,
                    "withdrawals_root": state.header.withdrawals_root,
                    "message_passer_storage_root": state.message_passer_storage_root,
                    "ok": checked.is_ok(),
                })
            );
            checked.map_err(Error::Mismatch)
        }
        Some("verify") => {
            let (values, set) = parse(
                &args[1..],
                &["--rollup", "--genesis", "--l1-rpc", "--l2-rpc", "--to", "--timeout"],
                &["--output-roots"],
            )
            .map_err(usage)?;
            let to = required(&values, "--to").map_err(usage)?;
            let args = VerifyArgs {
                rollup: required(&values, "--rollup").map_err(usage)?.into(),
                genesis: required(&values, "--genesis").map_err(usage)?.into(),
                l1_rpc: required(&values, "--l1-rpc").map_err(usage)?,
                l2_rpc: required(&values, "--l2-rpc").map_err(usage)?,
                to: to.parse().map_err(|_| usage(format!("--to {to}: not a block number")))?,
                output_roots: set.iter().any(|s| s == "--output-roots"),
                timeout: timeout(&values).map_err(usage)?,
            };
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            verify(&args, &mut out)
        }
        Some("derive") => {
            let (values, _) = parse(
                &args[1..],
                &["--rollup", "--genesis", "--l1-rpc", "--l2-rpc", "--to", "--timeout", "--expect-deposit-only"],
                &[],
            )
            .map_err(usage)?;
            let to = required(&values, "--to").map_err(usage)?;
            let args = DeriveArgs {
                rollup: required(&values, "--rollup").map_err(usage)?.into(),
                genesis: required(&values, "--genesis").map_err(usage)?.into(),
                l1_rpc: required(&values, "--l1-rpc").map_err(usage)?,
                l2_rpc: required(&values, "--l2-rpc").map_err(usage)?,
                to: to.parse().map_err(|_| usage(format!("--to {to}: not a block number")))?,
                timeout: timeout(&values).map_err(usage)?,
                expect_deposit_only: values
                    .get("--expect-deposit-only")
                    .map(|r| parse_range(r).map_err(|e| usage(format!("--expect-deposit-only {e}"))))
                    .transpose()?,
            };
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            derive(&args, &mut out)
        }
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(usage("no subcommand".into())),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Mismatch(e)) => {
            // A verify mismatch is a JSON object: it goes to stdout as the last line too.
            if e.starts_with('{') {
                println!("{e}");
            }
            eprintln!("kona-oracle: MISMATCH: {e}");
            ExitCode::from(1)
        }
        Err(Error::Io(e)) => {
            eprintln!("kona-oracle: {e}");
            ExitCode::from(2)
        }
    }
}
