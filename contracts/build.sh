#!/usr/bin/env bash
# Rebuilds the committed bytecode from the sources with the pinned solc-js
# (the compiler ships as JavaScript inside the npm package: no download).
# Settings: optimizer on, 200 runs, evmVersion cancun, standard JSON input.
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
npm install --prefix "$work" --no-audit --no-fund solc@0.8.30 >/dev/null 2>&1
SOLC="$work/node_modules/solc" node - Token Probe Game Counter DepositPortal Factory <<'JS'
const fs = require("fs");
const solc = require(process.env.SOLC);
for (const name of process.argv.slice(2)) {
  const input = {
    language: "Solidity",
    sources: { [`${name}.sol`]: { content: fs.readFileSync(`${name}.sol`, "utf8") } },
    settings: {
      optimizer: { enabled: true, runs: 200 },
      evmVersion: "cancun",
      outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  for (const e of output.errors || []) {
    if (e.severity === "error") { console.error(e.formattedMessage); process.exit(1); }
  }
  const contract = output.contracts[`${name}.sol`][name];
  fs.writeFileSync(`${name}.bin`, contract.evm.bytecode.object);
  fs.writeFileSync(`${name}.abi.json`, JSON.stringify(contract.abi, null, 1) + "\n");
  console.log(`${name}: ${contract.evm.bytecode.object.length / 2} bytes of creation code (solc ${solc.version()})`);
}
JS
