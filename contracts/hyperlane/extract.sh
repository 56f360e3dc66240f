#!/usr/bin/env bash
# Extracts the Hyperlane contracts tephra deploys from the official npm
# package's compiled artifacts, pinned by version and digest: the abi and the
# creation bytecode of each (the package keeps them in its typechain
# factories; no library is linked). No contract is compiled or changed here.
# Run from anywhere: contracts/hyperlane/extract.sh
set -euo pipefail
cd "$(dirname "$0")"
VERSION=12.1.0
SHA256=db6e7cbb2b9ff1affbabbfae2b2185e887d0a56e8607f393687c8e9e21f00051
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "@hyperlane-xyz/core@$VERSION" >/dev/null)
echo "$SHA256  $work/hyperlane-xyz-core-$VERSION.tgz" | sha256sum -c --quiet
tar -xzf "$work/hyperlane-xyz-core-$VERSION.tgz" -C "$work" package/dist/typechain/factories
FACTORIES="$work/package/dist/typechain/factories" node - <<'JS'
const fs = require("fs");
const root = process.env.FACTORIES;
const contracts = {
  Mailbox: "contracts/Mailbox__factory.js",
  MerkleTreeHook: "contracts/hooks/MerkleTreeHook__factory.js",
  PausableHook: "contracts/hooks/PausableHook__factory.js",
  StaticMessageIdMultisigIsmFactory:
    "contracts/isms/multisig/StaticMultisigIsm.sol/StaticMessageIdMultisigIsmFactory__factory.js",
  ValidatorAnnounce: "contracts/isms/multisig/ValidatorAnnounce__factory.js",
  TestRecipient: "contracts/test/TestRecipient__factory.js",
};
for (const [name, path] of Object.entries(contracts)) {
  const source = fs.readFileSync(`${root}/${path}`, "utf8");
  // The abi is a JavaScript literal (unquoted keys), the bytecode a string.
  const abi = new Function(`return ${source.match(/const _abi = (\[[\s\S]*?\n\]);/)[1]}`)();
  const bytecode = source.match(/const _bytecode = "(0x[0-9a-fA-F]*)"/)[1];
  if (bytecode.includes("__$")) throw new Error(`${name} needs a library linked`);
  fs.writeFileSync(`${name}.json`, JSON.stringify({ abi, bytecode }, null, 1) + "\n");
  console.log(`${name}: ${(bytecode.length - 2) / 2} bytes of creation code`);
}
JS
