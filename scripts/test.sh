#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh machine, then runs
# every test of the workspace, phase by phase, and prints each phase's time.
# `.ci/run` calls exactly this (docs/testing.md).
#
#   ./scripts/test.sh              every phase
#   ./scripts/test.sh node fuzz    the named phases only (after install)
#
# Phases: install fmt build unit exec l1 hsm-ha dataplane oracle node bench
# image dpdk fuzz (a run of named phases builds first when it runs tests). Clippy lints as
# the build compiles (see below), with every warning an error. Strict: a test
# whose prerequisite is missing fails (tephra-testkit); TEPHRA_TEST_STRICT=0
# turns that into a skip, listed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

all_phases=(install fmt build unit exec l1 hsm-ha dataplane oracle node bench image dpdk fuzz all-run)
if [ $# -gt 0 ]; then
  wanted=(install "$@")
  # Test phases run what the build phase built.
  if [[ " $* " =~ \ (unit|exec|hsm-ha|dataplane|node|bench|image)\  ]]; then wanted+=(build); fi
  # The node's OP Stack test runs the oracle the oracle phase builds.
  if [[ " $* " =~ \ node\  ]]; then wanted+=(oracle); fi
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
trap 'print_timings; jobs -p | xargs -r kill 2>/dev/null' EXIT
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
  # Hyperlane's own utilities (ethers 5), the oracle of the interop tests'
  # message ids, in their own install (oracle/hyperlane).
  if [ ! -d oracle/hyperlane/node_modules/@hyperlane-xyz/utils ]; then
    npm ci --no-audit --no-fund --prefix oracle/hyperlane
  fi
  # cargo fuzz, for the fuzz phase.
  if wants fuzz && ! cargo fuzz --version 2>/dev/null | grep -q '0.13.2'; then
    cargo install cargo-fuzz --locked --version 0.13.2
  fi
}
export PATH="$PWD/node_modules/.bin:$PATH"

# Clippy lints the workspace's own crates while the test build compiles them:
# clippy-driver wraps rustc for workspace members, as `cargo clippy` itself
# arranges, with -D warnings. A separate `cargo clippy` would first check every
# dependency, then the build would compile them all again. Every cargo call
# below sees the same wrapper, so none rebuilds what another built.
export RUSTC_WORKSPACE_WRAPPER="$(rustc --print sysroot)/bin/clippy-driver"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"

# The test executables are built once (the build phase) and run straight from
# that build's list: a `cargo test -p X` or `--test NAME` run would resolve its
# own features and rebuild. Every executable built must be run by some phase.
executables=target/test-executables.tsv
ran=target/test-executables-run.tsv

# Builds the test executables of the workspace (with cargo `args`) and lists
# them in `list`: crate folder, kind (lib, bin, test), name, path.
build_tests() {
  local list="$1"
  shift
  cargo test --workspace --locked --no-run --message-format=json-render-diagnostics "$@" \
    | jq -r 'select(.reason == "compiler-artifact" and .profile.test and .executable != null
          and .target.kind[0] != "bench")
        | [(.manifest_path | split("/") | .[-2]), .target.kind[0], .target.name, .executable] | @tsv' > "$list"
  [ -s "$list" ] || { echo "scripts/test.sh: no test executables were built" >&2; return 1; }
}

# Runs the listed executables of crate folder `folder` whose kind is `kind`
# (lib, bin or test), in the crate's folder as cargo does; `--` passes the
# rest to each executable (a name filter, say).
run_tests() {
  local list="$1" folder="$2" kind="$3" found=0 crate target_kind name path
  shift 3
  [ "${1:-}" = "--" ] && shift
  while IFS=$'\t' read -r crate target_kind name path; do
    [ "$crate" = "$folder" ] && [ "$target_kind" = "$kind" ] || continue
    echo "     Running $folder $kind $name"
    (cd "$folder" && "$path" "$@" < /dev/null)
    printf '%s\t%s\t%s\n' "$folder" "$kind" "$name" >> "$ran"
    found=1
  done < "$list"
  [ "$found" = 1 ] || { echo "scripts/test.sh: no $kind test executable in $folder/" >&2; return 1; }
}

# Every library, binary and test (the benches are built, and linted, once, by
# the dpdk phase with every feature; they run with scripts/bench.sh).
build() {
  build_tests "$executables" --lib --bins --tests
  : > "$ran"
}

# Every crate's unit tests: its library's and its binaries'.
unit() {
  local folder kind
  for kind in lib bin; do
    for folder in $(awk -F'\t' -v kind="$kind" '$2 == kind { print $1 }' "$executables" | sort -u); do
      run_tests "$executables" "$folder" "$kind"
    done
  done
  cargo test --workspace --locked --doc
  # types' tests/: the wire format's byte vectors from docs/wire.md;
  # history's: the store against the state it records (a property test).
  integration types history
}

# The independent OP Stack verifier (oracle/: kona, its own workspace and
# lock, no tephra crate): formatted, linted as it builds, its own tests run
# (against anvil) in release, which leaves oracle/target/release/kona-oracle
# for cli's op_stack and op_batcher tests.
oracle() {
  (cd oracle && cargo fmt --all -- --check && cargo test --release --locked)
}

integration() {
  local folder
  for folder in "$@"; do
    run_tests "$executables" "$folder" test
  done
}

# Every executable the build made was run (when every phase ran).
all_run() {
  local missing
  missing=$(cut -f1-3 "$executables" | sort -u | comm -23 - <(sort -u "$ran"))
  [ -z "$missing" ] || { echo "scripts/test.sh: built but not run by any phase:"; echo "$missing"; return 1; } >&2
}

# The feature-gated code: the DPDK backend (it links the system DPDK) and the
# YubiHSM USB connector (libusb), built and linted with its features, and the
# benches with them; then the
# DPDK backend's unit tests and its end-to-end test across a veth pair (the
# tests with dpdk in their names).
dpdk() {
  local list=target/test-executables-dpdk.tsv
  build_tests "$list" --features tephra-cli/dpdk,tephra-cli/yubihsm-usb --lib --benches --test kernel_bypass
  run_tests "$list" dataplane lib -- dpdk
  run_tests "$list" cli test -- dpdk
}

# Coverage-guided fuzzing of the parsers, bounded in time (fuzz/README.md):
# one build of every target (into target/fuzz, beside the rest of the build),
# then each target for an equal share of TEPHRA_FUZZ_SECONDS_TOTAL on a
# scratch copy of its corpus (the committed seeds stay as they are). No
# sanitizer: the parsers are safe Rust (docs/testing.md).
fuzz_cargo() {
  (cd fuzz && env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS RUSTC_BOOTSTRAP=1 \
    cargo fuzz "$1" -O -a -s none --target-dir ../target/fuzz "${@:2}")
}

fuzz() {
  local scratch targets seconds
  await_background_builds
  scratch="$(mktemp -d)"
  fuzz_cargo build
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
  seconds=$(( ${TEPHRA_FUZZ_SECONDS_TOTAL:-144} / ${#targets[@]} ))
  for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target"
    fuzz_cargo run "$target" "$scratch/$target" "corpus/$target" -- -max_total_time="$seconds" -rss_limit_mb=2048
  done
  rm -rf "$scratch"
}

# The QEMU test mostly waits on its guest (boots, reboots, a readiness
# timeout): while it runs, the fuzz phase's build takes the idle CPU at the
# lowest priority (nice 19: the guest has the cores whenever it wants them),
# and the fuzz phase then finds it done. (Only that build: it has its own
# target directory, while the dpdk build would relink the target/debug/tephra
# the image test ships.)
background_builds=""
start_background_builds() {
  (
    renice -n 19 -p "$BASHPID" > /dev/null
    fuzz_cargo build
  ) > target/background-builds.log 2>&1 &
  background_builds=$!
}
await_background_builds() {
  [ -n "$background_builds" ] || return 0
  local status=0
  wait "$background_builds" || status=$?
  background_builds=""
  echo "     (built while the image phase ran: target/background-builds.log)"
  [ "$status" = 0 ] || { tail -n 40 target/background-builds.log; return "$status"; }
}

phase install install
phase fmt cargo fmt --all -- --check
phase build build
phase unit unit
phase exec integration exec
phase l1 integration l1
phase hsm-ha integration hsm ha
phase dataplane integration dataplane
phase oracle oracle
# The node end to end: the `tephra` binary's tests live in its crate, cli/.
phase node integration cli
phase bench integration bench
# Everything the QEMU test boots is built from the test build's own `tephra`
# (target/debug/tephra), not from a second, release build of the workspace.
if wants image && wants fuzz; then start_background_builds; fi
phase image integration image
phase dpdk dpdk
phase fuzz fuzz
[ $# -gt 0 ] || phase all-run all_run
