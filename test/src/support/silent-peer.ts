// A WebSocket peer made by hand on a plain TCP socket, for tests of what the server does with
// a peer that misbehaves below the protocol: it can stop reading its socket (replies pile up at
// the server), never answer a ping, or say nothing at all after the upgrade.
import { connect, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { SUBPROTOCOL, encodeHello, encodeRequests, joinParts, LIMITS, PROTOCOL_VERSION, type BlockRequest, type Hello } from '@wsblk/shared';

/** One client frame: FIN, binary, masked with a zero key (so the payload goes as it is). */
export function clientFrame(payload: Buffer): Buffer {
  const n = payload.length;
  const head = n < 126 ? Buffer.alloc(6) : n < 65536 ? Buffer.alloc(8) : Buffer.alloc(14);
  head[0] = 0x82;
  if (n < 126) head[1] = 0x80 | n;
  else if (n < 65536) { head[1] = 0x80 | 126; head.writeUInt16BE(n, 2); }
  else { head[1] = 0x80 | 127; head.writeBigUInt64BE(BigInt(n), 2); }
  return Buffer.concat([head, payload]); // the last four bytes of head are the zero mask key
}

export class SilentPeer {
  /** Bytes received after the handshake (while reading). */
  received = 0;
  closed = false;
  readonly ended: Promise<void>;

  private constructor(readonly socket: Socket) {
    this.ended = new Promise((r) => socket.once('close', () => { this.closed = true; r(); }));
  }

  /**
   * Upgrades to /name on 127.0.0.1:port; resolves once the 101 came, rejects with the whole
   * answer (status line to body) when refused. `headers` add to or replace Host.
   */
  static async open(port: number, name: string, headers: Record<string, string> = {}): Promise<SilentPeer> {
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => {});
    await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
    const all = { Host: `127.0.0.1:${port}`, ...headers };
    const extra = Object.entries(all).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    socket.write(`GET /${name} HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`
      + `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ${SUBPROTOCOL}\r\n${extra}\r\n`);
    const peer = new SilentPeer(socket);
    await new Promise<void>((resolve, reject) => {
      let head = '';
      const onData = (d: Buffer) => {
        head += d.toString('latin1');
        const end = head.indexOf('\r\n\r\n');
        if (end < 0 || !head.startsWith('HTTP/1.1 101')) return;
        socket.off('data', onData);
        peer.received += head.length - end - 4;
        socket.on('data', (c: Buffer) => { peer.received += c.length; });
        resolve();
      };
      socket.on('data', onData);
      socket.once('close', () => reject(new Error(head || 'closed during the upgrade')));
    });
    return peer;
  }

  hello(hello: Partial<Hello> = {}): void {
    this.socket.write(clientFrame(encodeHello({
      version: PROTOCOL_VERSION, clientId: 'silent-peer', features: [], maxPayload: LIMITS.maxPayloadDefault, ...hello,
    })));
  }

  requests(reqs: BlockRequest[]): void {
    this.socket.write(clientFrame(joinParts(encodeRequests(reqs, false))));
  }

  /** Stops taking bytes off the socket: what the server sends stays in the kernel and in the server. */
  stopReading(): void {
    this.socket.pause();
  }

  startReading(): void {
    this.socket.resume();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** A process's resident set size in bytes (Linux). */
export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}
