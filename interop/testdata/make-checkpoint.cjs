// Makes checkpoint_with_id.json and checkpoint_signer.txt: a checkpoint
// signed by ethers (not tephra) with CheckpointLib.sol's digest, in the JSON
// Hyperlane's agents write (hyperlane-base LocalStorage, SignedType). The
// same checkpoint and key were accepted by the pinned MessageIdMultisigIsm
// (@hyperlane-xyz/core 12.1.0) on anvil. Run from the repository's root:
// node interop/testdata/make-checkpoint.cjs
const fs = require("fs");
const { ethers } = require("ethers");
const dir = __dirname;
const validator = new ethers.Wallet(ethers.keccak256(ethers.toUtf8Bytes("v1")));
const checkpoint = {
  merkle_tree_hook_address: "0x0000000000000000000000000165878a594ca255338adfa4d48449f69242eb8f",
  mailbox_domain: 1000,
  root: "0x7e075ac160e3dbc31afbc6054da54739ed3f810cf5a07588f9e0eef652c33ee9",
  index: 0,
};
const messageId = "0x687a4926567f7f5cdfe734efa51a04e230ada29c7be101feed71f7414b703904";
const domainHash = ethers.solidityPackedKeccak256(
  ["uint32", "bytes32", "string"],
  [checkpoint.mailbox_domain, checkpoint.merkle_tree_hook_address, "HYPERLANE"],
);
const inner = ethers.solidityPackedKeccak256(
  ["bytes32", "bytes32", "uint32", "bytes32"],
  [domainHash, checkpoint.root, checkpoint.index, messageId],
);
const serialized = validator.signingKey.sign(ethers.hashMessage(ethers.getBytes(inner))).serialized;
const sig = ethers.Signature.from(serialized);
// The agents write U256 as minimal hex.
const minimal = (hex) => "0x" + (BigInt(hex).toString(16));
const stored = {
  value: { checkpoint, message_id: messageId },
  signature: { r: minimal(sig.r), s: minimal(sig.s), v: sig.v },
  serialized_signature: serialized,
};
fs.writeFileSync(`${dir}/checkpoint_with_id.json`, JSON.stringify(stored, null, 2));
fs.writeFileSync(`${dir}/checkpoint_signer.txt`, validator.address + "\n");
console.log(validator.address, serialized);
