// Send a Hyperlane message from one chain and watch it arrive on another,
// with viem: what a game or dapp does (docs/interop.md, "For dapp developers").
//
//   ORIGIN_RPC, DESTINATION_RPC   the two chains' JSON-RPC
//   ORIGIN_DEPLOYMENT, DESTINATION_DEPLOYMENT   what `tephra interop deploy` wrote
//   PRIVATE_KEY                   the sender (pays the origin's gas)
//   BODY                          the message (text)
//
// It dispatches to the destination's TestRecipient, reads the message id
// from the Mailbox's DispatchId event, and waits until the destination
// Mailbox says it was delivered, then reads what the recipient got.
import { readFileSync } from "node:fs";
import { createPublicClient, createWalletClient, defineChain, http, parseAbi, parseEventLogs, pad, toHex, hexToString } from "viem";
import { privateKeyToAccount } from "viem/accounts";

const origin = JSON.parse(readFileSync(process.env.ORIGIN_DEPLOYMENT, "utf8"));
const destination = JSON.parse(readFileSync(process.env.DESTINATION_DEPLOYMENT, "utf8"));
const chain = (id, url) => defineChain({
  id, name: `chain ${id}`, nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 }, rpcUrls: { default: { http: [url] } },
});
const originChain = chain(origin.chain_id, process.env.ORIGIN_RPC);
const destinationChain = chain(destination.chain_id, process.env.DESTINATION_RPC);

const mailbox = parseAbi([
  "function dispatch(uint32 destinationDomain, bytes32 recipientAddress, bytes messageBody) payable returns (bytes32)",
  "function delivered(bytes32 messageId) view returns (bool)",
  "event DispatchId(bytes32 indexed messageId)",
]);
const recipient = parseAbi(["function lastData() view returns (bytes)"]);

const account = privateKeyToAccount(process.env.PRIVATE_KEY);
const wallet = createWalletClient({ account, chain: originChain, transport: http() });
const originClient = createPublicClient({ chain: originChain, transport: http(), pollingInterval: 50 });
const destinationClient = createPublicClient({ chain: destinationChain, transport: http(), pollingInterval: 50 });

// 1. Send: Mailbox.dispatch on the origin (no value: the default hook charges nothing).
const started = Date.now();
const hash = await wallet.writeContract({
  address: origin.mailbox, abi: mailbox, functionName: "dispatch",
  args: [destination.domain, pad(destination.test_recipient), toHex(process.env.BODY)],
});
const receipt = await originClient.waitForTransactionReceipt({ hash, pollingInterval: 50 });
const [{ args: { messageId } }] = parseEventLogs({ abi: mailbox, eventName: "DispatchId", logs: receipt.logs });
console.log(`dispatched ${messageId}`);

// 2. Handle: the relayer calls Mailbox.process on the destination, which
// checks the validators' signatures (the ISM) and calls the recipient's handle().
for (;;) {
  const done = await destinationClient.readContract({
    address: destination.mailbox, abi: mailbox, functionName: "delivered", args: [messageId],
  });
  if (done) break;
  if (Date.now() - started > 60_000) throw new Error(`${messageId} not delivered within 60 s`);
  await new Promise((resolve) => setTimeout(resolve, 50));
}
const got = await destinationClient.readContract({ address: destination.test_recipient, abi: recipient, functionName: "lastData" });
console.log(`delivered ${messageId} in ${Date.now() - started} ms: ${hexToString(got)}`);
