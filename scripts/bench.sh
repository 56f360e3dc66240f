#!/usr/bin/env bash
# The perf engineer's one command: builds tephra and tephra-bench in release,
# installs anvil (npm ci), then runs every benchmark phase (bench/README.md).
# Workloads are generated once into bench-data/; results, report.md and the
# plots land in bench-results/. Arguments go to `tephra-bench all`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
if [ ! -x node_modules/.bin/anvil ]; then
  npm ci --no-audit --no-fund
fi
cargo build --release --locked -p tephra-cli -p tephra-bench
exec target/release/tephra-bench all "$@"
