//! Test halves that run in a child process: an `#[ignore]`d entry point of
//! the same test binary, started with its own environment by the real test.
//! Ignored, the half is never counted as a passing test on its own.

use std::process::{Command, Output};

/// A command that runs the ignored test `name` (its full path, for example
/// `guard::tests::child_persists_then_hangs`) of this test binary alone.
pub fn command(name: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command.args(["--exact", name, "--ignored", "--nocapture", "--test-threads", "1"]);
    command
}

/// Runs the ignored test `name` with `env` to completion; fails unless it
/// ran and passed. Its output, for further checks.
pub fn run(name: &str, env: &[(&str, &std::ffi::OsStr)]) -> Output {
    let output = command(name).envs(env.iter().copied()).output().expect("the test binary starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the child half {name} failed:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The value the parent gave the child half in `variable`; a child half run
/// by hand without it fails, saying who runs it.
pub fn arg(variable: &str, parent: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| panic!("a child half: {parent} runs it with {variable} set"))
}
