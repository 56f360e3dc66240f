#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh machine, then runs
# every test of the workspace. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: hwloc, libxdp, DPDK, clang, SoftHSM2 (scripts/deps.sh).
source scripts/deps.sh
# The image build and its QEMU boot test (image/README.md).
source scripts/image-deps.sh

# Real peers for the differential and end-to-end tests: Foundry's anvil and
# cast from npm, pinned in package-lock.json.
if [ ! -x node_modules/.bin/anvil ] || [ ! -x node_modules/.bin/cast ] || [ ! -d node_modules/viem ]; then
  npm ci --no-audit --no-fund
fi
export PATH="$PWD/node_modules/.bin:$PATH"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The YubiHSM USB connector is behind a feature (it needs libusb): keep it building.
cargo clippy -p tephra-node --features yubihsm-usb --locked -- -D warnings
# The DPDK backend is behind a feature (it links the system DPDK): keep it
# building, and run its end-to-end test across a veth pair (root).
cargo clippy -p tephra-node --features dpdk --all-targets --locked -- -D warnings
cargo test --workspace --locked
cargo test -p tephra-node --features dpdk --locked --test kernel_bypass

# Coverage-guided fuzzing of the network parsers, bounded in time (fuzz/README.md).
# A scratch copy of each corpus takes the new inputs; the committed seeds stay.
if ! cargo fuzz --version 2>/dev/null | grep -q '0.13.2'; then
  cargo install cargo-fuzz --locked --version 0.13.2
fi
fuzz_seconds="${TEPHRA_FUZZ_SECONDS:-30}"
scratch="$(mktemp -d)"
for target in wire_request wire_reply tx_verify batchlog_segment config_toml frame_parse rpc_request update_bundle replication_message; do
  mkdir -p "$scratch/$target"
  (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$target" "$scratch/$target" "corpus/$target" \
    -- -max_total_time="$fuzz_seconds" -rss_limit_mb=2048)
done
rm -rf "$scratch"
