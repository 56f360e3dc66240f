#!/usr/bin/env bash
# The main job: installs the system packages tephra needs (scripts/deps.sh),
# then runs the sequencer on the embedded defaults; arguments go to `tephra run`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
exec cargo run --release --locked -p tephra-cli -- run "$@"
