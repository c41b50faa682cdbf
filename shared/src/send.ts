// Sends one message made of parts (prefixed header + payloads) on a WebSocket.
//
// The fast path writes the message as ONE WebSocket frame straight to ws's socket: a frame
// header, then the parts as they are, corked so they leave in one writev. No copy of the
// payloads on the sending side (no Buffer.concat), and the receiver gets a single frame, which
// ws hands over without joining fragments (it copies a frame at most once, when the frame
// spans several socket reads). Bench (bench/README.md, "What changed and why"): this replaced
// "join below 64 KiB, else one ws fragment per part".
//
// Writing around ws's Sender is safe only at a frame boundary with nothing queued in the
// Sender: we check its state (no blob or deflate in progress, nothing queued, not inside a
// fragmented message) and that the socket is open; otherwise ws.send() takes the message as
// before. permessage-deflate is off on both ends. A client frame must be masked: we send the
// mask bit with a zero key (XOR with zero leaves the payload as it is; the client already
// masks with zeros, see zeroMask in client/src/transport/remote-disk.ts).

/** The part of ws's WebSocket that sending needs (shared/ does not depend on ws). */
export interface MessageSink {
  send(data: Buffer, options: { binary: boolean; fin: boolean; compress: boolean }, cb?: (err?: Error) => void): void;
}

/** The ws internals the fast path looks at (ws 8). */
interface WsInternals {
  readyState?: number;
  _isServer?: boolean;
  _socket?: { cork(): void; uncork(): void; write(b: Buffer): boolean; writable?: boolean; destroyed?: boolean };
  _sender?: { _state?: number; _queue?: unknown[]; _firstFragment?: boolean; _deflating?: boolean };
}

/** ws's WebSocket.OPEN. */
const OPEN = 1;
/** Parts this small are copied into the frame header buffer (one buffer, no iovec). */
const MERGE_BELOW = 1024;

export function sendParts(ws: MessageSink, parts: readonly Buffer[]): void {
  const w = ws as unknown as WsInternals;
  const socket = w._socket;
  const sender = w._sender;
  if (
    w.readyState !== OPEN || !socket || socket.destroyed || !sender ||
    sender._state !== 0 || (sender._queue && sender._queue.length !== 0) ||
    sender._firstFragment === false || sender._deflating === true
  ) {
    sendViaWs(ws, parts);
    return;
  }
  let total = 0;
  for (const p of parts) total += p.length;
  const masked = w._isServer !== true;
  const lenBytes = total < 126 ? 0 : total < 65536 ? 2 : 8;
  const hdrLen = 2 + lenBytes + (masked ? 4 : 0);
  const first = parts[0]!;
  const merge = first.length < MERGE_BELOW;
  const hdr = Buffer.allocUnsafe(hdrLen + (merge ? first.length : 0));
  hdr[0] = 0x82; // FIN, binary
  hdr[1] = (masked ? 0x80 : 0) | (lenBytes === 0 ? total : lenBytes === 2 ? 126 : 127);
  if (lenBytes === 2) hdr.writeUInt16BE(total, 2);
  else if (lenBytes === 8) {
    hdr.writeUInt32BE(Math.floor(total / 0x1_0000_0000), 2);
    hdr.writeUInt32BE(total >>> 0, 6);
  }
  if (masked) hdr.writeUInt32BE(0, 2 + lenBytes);
  if (merge) first.copy(hdr, hdrLen);
  if (parts.length === 1 && merge) {
    socket.write(hdr);
    return;
  }
  socket.cork();
  socket.write(hdr);
  for (let i = merge ? 1 : 0; i < parts.length; i++) socket.write(parts[i]!);
  socket.uncork();
}

/** Through ws: small messages joined into one frame, large ones as fragments, corked. */
function sendViaWs(ws: MessageSink, parts: readonly Buffer[]): void {
  if (parts.length === 1) {
    ws.send(parts[0]!, { binary: true, fin: true, compress: false });
    return;
  }
  const socket = (ws as unknown as WsInternals)._socket;
  socket?.cork();
  const last = parts.length - 1;
  for (let i = 0; i <= last; i++) ws.send(parts[i]!, { binary: true, fin: i === last, compress: false });
  socket?.uncork();
}
