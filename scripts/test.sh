#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh machine, then runs
# every test of the workspace, phase by phase, and prints each phase's time.
# `.ci/run` calls exactly this (docs/testing.md).
#
#   ./scripts/test.sh              every phase
#   ./scripts/test.sh node fuzz    the named phases only (after install)
#
# Phases: install fmt clippy build unit exec hsm-ha dataplane node bench image
# dpdk fuzz. Strict: a test whose prerequisite is missing fails (tephra-testkit);
# TEPHRA_TEST_STRICT=0 turns that into a skip, listed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

all_phases=(install fmt clippy build unit exec hsm-ha dataplane node bench image dpdk fuzz)
if [ $# -gt 0 ]; then
  wanted=(install "$@")
  for phase in "$@"; do
    [[ " ${all_phases[*]} " == *" $phase "* ]] || { echo "scripts/test.sh: no phase $phase (${all_phases[*]})" >&2; exit 2; }
  done
else
  wanted=("${all_phases[@]}")
fi
wants() { [[ " ${wanted[*]} " == *" $1 "* ]]; }

export TEPHRA_TEST_STRICT="${TEPHRA_TEST_STRICT:-1}"
# The image test's Debian base, cached by the hash of what goes into it
# (image/build.sh), outside the clone as cargo's registry is: CI's fresh
# clones reuse it.
export TEPHRA_IMAGE_CACHE="${TEPHRA_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tephra/image}"
export TEPHRA_SKIP_LEDGER="$PWD/target/test-skips.log"
mkdir -p target
: > "$TEPHRA_SKIP_LEDGER"

# Per-phase timings, printed at the end of every run, passing or not.
timings=()
current=""
started_at=$SECONDS
print_timings() {
  local status=$?
  [ -n "$current" ] && timings+=("$current|$((SECONDS - phase_started))|FAILED")
  echo
  echo "phase timings (wall seconds):"
  printf '  %-10s %6s  %s\n' phase seconds ""
  for row in "${timings[@]}"; do
    IFS='|' read -r name seconds note <<< "$row"
    printf '  %-10s %6d  %s\n' "$name" "$seconds" "$note"
  done
  printf '  %-10s %6d\n' total "$((SECONDS - started_at))"
  local skipped
  skipped=$(wc -l < "$TEPHRA_SKIP_LEDGER" 2>/dev/null || echo 0)
  echo "tests skipped for a missing prerequisite: $skipped"
  [ "$skipped" -gt 0 ] && sed 's/^/  /' "$TEPHRA_SKIP_LEDGER"
  return $status
}
trap print_timings EXIT
phase() {
  local name="$1"
  shift
  wants "$name" || return 0
  echo "==> phase $name"
  current="$name"
  phase_started=$SECONDS
  "$@"
  timings+=("$name|$((SECONDS - phase_started))|")
  current=""
}

install() {
  # System packages: hwloc, libxdp, DPDK, clang, SoftHSM2, etcd (scripts/deps.sh).
  source scripts/deps.sh
  # The image build and its QEMU boot test (image/README.md).
  source scripts/image-deps.sh
  # Real peers for the differential and end-to-end tests: Foundry's anvil and
  # cast, and viem, from npm, pinned in package-lock.json.
  if [ ! -x node_modules/.bin/anvil ] || [ ! -x node_modules/.bin/cast ] || [ ! -d node_modules/viem ]; then
    npm ci --no-audit --no-fund
  fi
  # cargo fuzz, for the fuzz phase.
  if wants fuzz && ! cargo fuzz --version 2>/dev/null | grep -q '0.13.2'; then
    cargo install cargo-fuzz --locked --version 0.13.2
  fi
}
export PATH="$PWD/node_modules/.bin:$PATH"

clippy() {
  cargo clippy --workspace --all-targets --locked -- -D warnings
  # The feature-gated code: the DPDK backend (it links the system DPDK) and
  # the YubiHSM USB connector (libusb), in one pass.
  cargo clippy --workspace --all-targets --locked --features tephra-node/dpdk,tephra-node/yubihsm-usb -- -D warnings
}

# The integration tests of the named crate folders: every file of their
# tests/ folders. Always with --workspace, so that features unify as in the
# build phase (a -p build resolves its own features and rebuilds).
integration() {
  local tests=()
  for folder in "$@"; do
    for file in "$folder"/tests/*.rs; do tests+=(--test "$(basename "$file" .rs)"); done
  done
  cargo test --workspace --locked "${tests[@]}"
}

unit() {
  cargo test --workspace --locked --lib --bins
  cargo test --workspace --locked --doc
}

# The DPDK backend's unit tests and its end-to-end test across a veth pair
# (the tests with dpdk in their names, built with the feature).
dpdk() {
  cargo test --workspace --locked --features tephra-node/dpdk --lib --test kernel_bypass -- dpdk
}

# Coverage-guided fuzzing of the parsers, bounded in time (fuzz/README.md):
# one build of every target (into target/fuzz, beside the rest of the build),
# then each target for an equal share of TEPHRA_FUZZ_SECONDS_TOTAL on a
# scratch copy of its corpus (the committed seeds stay as they are). No
# sanitizer: the parsers are safe Rust, and AddressSanitizer doubled the
# build and slowed every run (docs/testing.md).
fuzz_cargo() {
  (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz "$1" -O -s none --target-dir ../target/fuzz "${@:2}")
}

fuzz() {
  local scratch targets seconds
  scratch="$(mktemp -d)"
  fuzz_cargo build
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
  seconds=$(( ${TEPHRA_FUZZ_SECONDS_TOTAL:-180} / ${#targets[@]} ))
  for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target"
    fuzz_cargo run "$target" "$scratch/$target" "corpus/$target" -- -max_total_time="$seconds" -rss_limit_mb=2048
  done
  rm -rf "$scratch"
}

phase install install
phase fmt cargo fmt --all -- --check
phase clippy clippy
phase build cargo test --workspace --locked --no-run
phase unit unit
phase exec integration exec
phase hsm-ha integration hsm ha
phase dataplane integration dataplane
phase node integration node
phase bench integration bench
# Everything the QEMU test boots is built from the test build's own `tephra`
# (target/debug/tephra), not from a second, release build of the workspace.
phase image integration image
phase dpdk dpdk
phase fuzz fuzz
