// viem against tephra: send, wait for the receipt, read balances and logs,
// deploy a token, read a block's receipts and watch new heads over WebSocket.
import { readFileSync } from "node:fs";
import assert from "node:assert/strict";
import {
  createPublicClient, createWalletClient, http, webSocket, parseEther, parseAbi, decodeEventLog,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { foundry } from "viem/chains";

const account = privateKeyToAccount("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80");
const transport = http(process.env.TEPHRA_RPC);
const publicClient = createPublicClient({ chain: foundry, transport, pollingInterval: 50 });
const wallet = createWalletClient({ account, chain: foundry, transport });
const abi = parseAbi([
  "function transfer(address to, uint256 value) returns (bool)",
  "function balanceOf(address) view returns (uint256)",
  "event Transfer(address indexed from, address indexed to, uint256 value)",
]);

const bob = "0x000000000000000000000000000000000000B0b2";
const hash = await wallet.sendTransaction({ to: bob, value: parseEther("1.5") });
const receipt = await publicClient.waitForTransactionReceipt({ hash, pollingInterval: 50 });
assert.equal(receipt.status, "success");
assert.equal(await publicClient.getBalance({ address: bob }), parseEther("1.5"));

const bytecode = "0x" + readFileSync(process.env.TOKEN_BIN, "utf8").trim();
const deployHash = await wallet.deployContract({
  abi: parseAbi(["constructor(uint256 supply)"]), bytecode, args: [1000000n],
});
const deployed = await publicClient.waitForTransactionReceipt({ hash: deployHash, pollingInterval: 50 });
assert.equal(deployed.status, "success");
const token = deployed.contractAddress;

const ws = createPublicClient({ chain: foundry, transport: webSocket(process.env.TEPHRA_WS) });
const heads = [];
const unwatch = ws.watchBlocks({ onBlock: (block) => heads.push(block.number) });

const transferHash = await wallet.writeContract({ address: token, abi, functionName: "transfer", args: [bob, 42n] });
const transferred = await publicClient.waitForTransactionReceipt({ hash: transferHash, pollingInterval: 50 });
const event = decodeEventLog({ abi, ...transferred.logs[0] });
assert.equal(event.eventName, "Transfer");
assert.equal(event.args.value, 42n);
assert.equal(await publicClient.readContract({ address: token, abi, functionName: "balanceOf", args: [bob] }), 42n);
const logs = await publicClient.getContractEvents({ address: token, abi, eventName: "Transfer", fromBlock: 0n });
assert.equal(logs.length, 2); // the mint in the constructor, then the transfer
// eth_getBlockReceipts: the block's receipts, in order, each as its own lookup gives it.
const block = await publicClient.getBlock({ blockNumber: transferred.blockNumber });
const blockReceipts = await publicClient.getBlockReceipts({ blockNumber: transferred.blockNumber });
assert.deepEqual(blockReceipts.map((r) => r.transactionHash), block.transactions);
assert.deepEqual(blockReceipts.find((r) => r.transactionHash === transferHash), transferred);

// Two and a half block times: at least two new heads, whenever the watch began.
await new Promise((resolve) => setTimeout(resolve, 2500));
unwatch();
assert.ok(heads.length >= 2, `newHeads delivered ${heads.length} blocks`);
for (let i = 1; i < heads.length; i++) assert.equal(heads[i], heads[i - 1] + 1n);
console.log("viem: ok");
process.exit(0);
