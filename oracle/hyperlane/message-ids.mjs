// Reads one message per line on stdin, as JSON {version, nonce, origin,
// sender, destination, recipient, body} (addresses and body as 0x-hex), and
// prints for each the bytes and id Hyperlane's own utilities give:
// {"message": formatMessage(...), "id": messageId(message)}.
import { createInterface } from 'node:readline';
import { formatMessage, messageId } from '@hyperlane-xyz/utils';

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const m = JSON.parse(line);
  const message = formatMessage(m.version, m.nonce, m.origin, m.sender, m.destination, m.recipient, m.body);
  console.log(JSON.stringify({ message, id: messageId(message) }));
}
