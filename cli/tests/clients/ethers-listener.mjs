// An ethers v6 event listener against tephra, as a game backend or indexer
// writes one: `contract.on("Transfer", ...)` over HTTP, which ethers serves
// with eth_newFilter and eth_getFilterChanges at each new block.
//
// Prints "ready <filter id>" once its filter is installed, then counts each
// Transfer it hears by (transaction hash, log index), printing "heard <n>"
// each second while the count moves (so that a run that stops short shows
// where it stopped). After EXPECTED events,
// and LINGER_MS more to catch any heard twice, it prints one line
// "result <json>" and exits. The node may restart meanwhile: ethers keeps
// polling the same filter id, and reports failed polls on stdout ("@TODO").
import { Contract, JsonRpcProvider, Network } from "ethers";

const url = process.env.TEPHRA_RPC;
const token = process.env.TOKEN;
const expected = Number(process.env.EXPECTED);
const lingerMs = Number(process.env.LINGER_MS ?? "3000");

const provider = new JsonRpcProvider(url, Network.from(31337), { staticNetwork: true, pollingInterval: 100 });
const send = provider.send.bind(provider);
provider.send = async (method, params) => {
  const result = await send(method, params);
  if (method === "eth_newFilter") console.log(`ready ${result}`);
  return result;
};

const abi = ["event Transfer(address indexed from, address indexed to, uint256 value)"];
const contract = new Contract(token, abi, provider);
const seen = new Map();
let heard = 0;
let finishing = false;

function finish() {
  const duplicates = [...seen].filter(([, count]) => count > 1).map(([key]) => key);
  console.log(`result ${JSON.stringify({ heard, distinct: seen.size, duplicates: duplicates.slice(0, 20) })}`);
  process.exit(0);
}

let reported = 0;
setInterval(() => {
  if (heard !== reported) {
    reported = heard;
    console.log(`heard ${heard}`);
  }
}, 1000).unref();

await contract.on("Transfer", (from, to, value, event) => {
  const key = `${event.log.transactionHash}:${event.log.index}`;
  seen.set(key, (seen.get(key) ?? 0) + 1);
  heard += 1;
  if (heard >= expected && !finishing) {
    finishing = true;
    setTimeout(finish, lingerMs);
  }
});
