// A WsConn of either role over a real loopback TCP connection, facing a raw socket that plays
// the peer byte by byte (the server's conn reads 'data' chunks, the client's reads with onread).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { BufferPool, WsConn, onreadInto, type WsConnOptions } from '@wsblk/shared';
import { sendv } from '@wsblk/native';
import { encodeFrame, readFrames } from './ws-wire.js';

const KiB = 1024;
const MiB = 1 << 20;

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Waits until `ok()` holds, polling; fails after `ms`. */
export async function until(ok: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms} ms`);
    await sleep(5);
  }
}

/** A pool that records every size asked of it. */
export class RecordingPool extends BufferPool {
  readonly taken: number[] = [];
  override take(n: number): Buffer {
    this.taken.push(n);
    return super.take(n);
  }
  get largest(): number {
    return Math.max(0, ...this.taken);
  }
}

export type Role = 'server' | 'client';

/**
 * A WsConn of `role` on one end of a loopback TCP connection and a raw socket on the other.
 * peer.send() writes frames as the other role would (masked towards a server); peer.got holds
 * what the conn wrote, unless peer.socket is paused.
 */
export async function pair(role: Role, opts: Partial<WsConnOptions> = {}) {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const options: WsConnOptions = { maxMessage: 16 * MiB, closeTimeoutMs: 300, sendv, ...opts };
  let conn: WsConn;
  let peerSocket: Socket;
  if (role === 'server') {
    peerSocket = netConnect({ host: '127.0.0.1', port });
    const [s] = await accepted;
    conn = new WsConn(s, 'server', options);
  } else {
    // As wsConnect does: the socket reads with onread into the conn's reader. net.Socket asks
    // for a buffer as it is made, before the conn exists: that one read is pushed.
    let first: Buffer | null = Buffer.allocUnsafe(16 * KiB);
    const target = {
      nextBuffer: () => first ?? conn.reader.nextBuffer(),
      filled: (n: number) => {
        if (!first) return conn.reader.filled(n);
        const b = first.subarray(0, n);
        first = null;
        conn.reader.push(b);
      },
    };
    const s = netConnect({ host: '127.0.0.1', port, onread: onreadInto(target) });
    // Connected first, as wsConnect's socket is: the writer finds the descriptor sendv writes to.
    [peerSocket] = await accepted;
    await once(s, 'connect');
    conn = new WsConn(s, 'client', options, undefined, 'onread');
  }
  server.close();
  const messages: Buffer[] = [];
  let closed: { code: number; reason: string } | undefined;
  conn.onmessage = (data) => messages.push(Buffer.from(data));
  conn.onclose = (code, reason) => { closed = { code, reason }; };
  conn.start();
  const got: Buffer[] = [];
  peerSocket.on('data', (c: Buffer) => got.push(c));
  peerSocket.on('error', () => {});
  let keyN = 1;
  const peer = {
    socket: peerSocket,
    /** Frames as the other role sends them: masked (a fresh key each) when the conn is a server. */
    frame: (opcode: number, payload: Buffer = Buffer.alloc(0), fin = true) =>
      encodeFrame({ opcode, payload, fin, mask: role === 'server' ? (keyN++ * 0x9e3779b1) >>> 0 || 1 : null }),
    send: (b: Buffer) => peerSocket.write(b),
    frames: () => readFrames(Buffer.concat(got)).frames,
  };
  const done = () => {
    conn.terminate();
    peerSocket.destroy();
  };
  return { conn, peer, messages, closed: () => closed, done };
}

