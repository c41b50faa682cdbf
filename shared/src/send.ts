// Sends one message made of parts (prefixed header + payloads) on a WebSocket.
// Small messages are joined (one frame, one copy of small data); large ones go out as
// fragments of one message so payloads are never copied.

/** The part of ws's WebSocket that sending needs (shared/ does not depend on ws). */
export interface MessageSink {
  send(data: Buffer, options: { binary: boolean; fin: boolean; compress: boolean }, cb?: (err?: Error) => void): void;
}

/** Below this many bytes a message is joined into one buffer before sending. */
const JOIN_BELOW = 64 << 10;

export function sendParts(ws: MessageSink, parts: readonly Buffer[]): void {
  let total = 0;
  for (const p of parts) total += p.length;
  if (parts.length === 1 || total < JOIN_BELOW) {
    ws.send(parts.length === 1 ? parts[0]! : Buffer.concat(parts, total), { binary: true, fin: true, compress: false });
    return;
  }
  // ws writes every fragment on its own; corked, the whole message leaves in one writev.
  const socket = (ws as { _socket?: { cork(): void; uncork(): void } })._socket;
  socket?.cork();
  const last = parts.length - 1;
  for (let i = 0; i <= last; i++) ws.send(parts[i]!, { binary: true, fin: i === last, compress: false });
  socket?.uncork();
}
