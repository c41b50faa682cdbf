// A WebSocket client that speaks the wsblk protocol by hand, for tests that need to send what
// RemoteDisk never would: malformed frames, text frames, requests before the welcome, a
// chosen session to resume, replays of chosen sequence numbers.
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import {
  LIMITS, PROTOCOL_VERSION, SUBPROTOCOL, decodeMessage, encodeHello, encodeRequests, joinParts,
  type BlockReply, type BlockRequest, type Hello, type Message, type Welcome,
} from '@wsblk/shared';

export interface RawConnectOptions {
  token?: string;
  /** Subprotocols offered; default [SUBPROTOCOL]. An empty list offers none. */
  protocols?: string[];
}

/** How an upgrade that the server refused ended. */
export interface Refusal {
  status: number;
  body: string;
  /** True if the client ever saw an open WebSocket (it must not, for a refusal). */
  opened: boolean;
}

export interface CloseInfo {
  code: number;
  reason: string;
  at: number;
}

export class RawClient {
  /** Messages received and not yet taken by next(). */
  private readonly queue: Array<{ msg: Message; at: number }> = [];
  private waiter: (() => void) | undefined;
  /** Every message received, with its arrival time (performance.now()). */
  readonly received: Array<{ msg: Message; at: number }> = [];
  /** The byte length of every binary message received, in order. */
  readonly sizes: number[] = [];
  readonly closed: Promise<CloseInfo>;
  closeInfo: CloseInfo | undefined;
  /** Errors decoding what the server sent (a test failure, kept to assert on). */
  readonly decodeErrors: Error[] = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, isBinary) => {
      if (!isBinary) {
        this.decodeErrors.push(new Error('server sent a text message'));
        return;
      }
      this.sizes.push(data.length);
      try {
        const entry = { msg: decodeMessage(data), at: performance.now() };
        this.queue.push(entry);
        this.received.push(entry);
      } catch (e) {
        this.decodeErrors.push(e as Error);
      }
      this.wake();
    });
    ws.on('error', () => {});
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString(), at: performance.now() };
        this.wake();
        resolve(this.closeInfo);
      });
    });
  }

  private static open(url: string, opts: RawConnectOptions): WebSocket {
    const headers: Record<string, string> = {};
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    const protocols = opts.protocols ?? [SUBPROTOCOL];
    return new WebSocket(url, protocols, { headers, perMessageDeflate: false, maxPayload: 64 << 20 });
  }

  /** Opens a WebSocket; rejects if the upgrade is refused or fails. */
  static connect(url: string, opts: RawConnectOptions = {}): Promise<RawClient> {
    const ws = RawClient.open(url, opts);
    ws.binaryType = 'nodebuffer';
    const client = new RawClient(ws);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(client));
      ws.once('unexpected-response', (_req, res) => {
        reject(new Error(`upgrade refused: HTTP ${res.statusCode}`));
        res.resume();
        ws.terminate();
      });
      ws.once('error', reject);
    });
  }

  /** Tries an upgrade that the server is expected to refuse; resolves with the HTTP answer. */
  static refusal(url: string, opts: RawConnectOptions = {}): Promise<Refusal> {
    const ws = RawClient.open(url, opts);
    let opened = false;
    ws.on('open', () => { opened = true; ws.terminate(); });
    return new Promise((resolve, reject) => {
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => { body += d; });
        res.on('end', () => {
          ws.terminate();
          resolve({ status: res.statusCode ?? 0, body, opened });
        });
      });
      ws.on('error', (err) => { if (opened) return; reject(err); });
      ws.on('close', () => { if (opened) resolve({ status: 101, body: '', opened }); });
    });
  }

  send(data: Buffer | string): void {
    this.ws.send(data, { binary: typeof data !== 'string' });
  }

  sendHello(hello: Partial<Hello> = {}): void {
    this.send(encodeHello({
      version: PROTOCOL_VERSION,
      clientId: 'raw-test-client',
      features: [],
      maxPayload: LIMITS.maxPayloadDefault,
      ...hello,
    }));
  }

  sendRequests(requests: BlockRequest[], lz4 = false): void {
    this.send(joinParts(encodeRequests(requests, lz4)));
  }

  /** The next message, waiting up to timeoutMs; rejects on timeout or close. */
  async next(timeoutMs = 5000): Promise<{ msg: Message; at: number }> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const e = this.queue.shift();
      if (e) return e;
      if (this.closeInfo) throw new Error(`connection closed (${this.closeInfo.code} ${this.closeInfo.reason}) while waiting for a message`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no message within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => { clearTimeout(t); resolve(); };
      });
      this.waiter = undefined;
    }
  }

  /** Sends a hello and waits for the welcome. */
  async hello(hello: Partial<Hello> = {}, timeoutMs = 5000): Promise<Welcome & { at: number }> {
    this.sendHello(hello);
    const { msg, at } = await this.next(timeoutMs);
    if (msg.kind !== 'welcome') throw new Error(`expected a welcome, got ${msg.kind}`);
    return { ...msg.welcome, at };
  }

  /** Collects replies until every seq in `seqs` is answered; returns them by seq. */
  async replies(seqs: number[], timeoutMs = 5000): Promise<Map<number, BlockReply & { at: number }>> {
    const want = new Set(seqs);
    const out = new Map<number, BlockReply & { at: number }>();
    const deadline = performance.now() + timeoutMs;
    while (want.size > 0) {
      const { msg, at } = await this.next(Math.max(1, deadline - performance.now()));
      if (msg.kind !== 'replies') throw new Error(`expected replies, got ${msg.kind}`);
      for (const r of msg.replies) {
        if (out.has(r.seq)) throw new Error(`seq ${r.seq} answered twice`);
        out.set(r.seq, { ...r, at });
        want.delete(r.seq);
      }
    }
    return out;
  }

  /** Sends requests and waits for their replies. */
  async roundTrip(requests: BlockRequest[], lz4 = false): Promise<Map<number, BlockReply & { at: number }>> {
    this.sendRequests(requests, lz4);
    return this.replies(requests.map((r) => r.seq));
  }

  /** Waits for the server to close the connection (rejects after timeoutMs). */
  async closedWithin(timeoutMs = 5000): Promise<CloseInfo> {
    let t: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      t = setTimeout(() => reject(new Error(`connection still open after ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([this.closed, timeout]);
    } finally {
      clearTimeout(t);
    }
  }

  terminate(): void {
    this.ws.terminate();
  }

  private wake(): void {
    this.waiter?.();
  }
}

// --- hand-made messages ---------------------------------------------------------------------

/** A value msgpack() writes as a 64-bit unsigned integer (to send integers past 2^53). */
export class U64 {
  constructor(readonly value: bigint) {}
}

/**
 * A small msgpack encoder independent of the codec under test: nil, booleans, integers
 * (smallest form), float64 for non-integers, strings, arrays, maps (plain objects), bin (Buffer).
 */
export function msgpack(v: unknown): Buffer {
  const out: Buffer[] = [];
  const put = (v: unknown): void => {
    if (v === null || v === undefined) out.push(Buffer.from([0xc0]));
    else if (v === true) out.push(Buffer.from([0xc3]));
    else if (v === false) out.push(Buffer.from([0xc2]));
    else if (v instanceof U64) {
      const b = Buffer.alloc(9);
      b[0] = 0xcf;
      b.writeBigUInt64BE(v.value, 1);
      out.push(b);
    } else if (typeof v === 'number') {
      if (Number.isInteger(v) && v >= 0 && v < 128) out.push(Buffer.from([v]));
      else if (Number.isInteger(v) && v < 0 && v >= -32) out.push(Buffer.from([v & 0xff]));
      else if (Number.isInteger(v) && v >= 0 && v <= 0xffffffff) {
        const b = Buffer.alloc(5);
        b[0] = 0xce;
        b.writeUInt32BE(v, 1);
        out.push(b);
      } else if (Number.isInteger(v) && v < 0 && v >= -0x80000000) {
        const b = Buffer.alloc(5);
        b[0] = 0xd2;
        b.writeInt32BE(v, 1);
        out.push(b);
      } else {
        const b = Buffer.alloc(9);
        b[0] = 0xcb;
        b.writeDoubleBE(v, 1);
        out.push(b);
      }
    } else if (typeof v === 'string') {
      const s = Buffer.from(v);
      if (s.length > 255) throw new Error('msgpack(): string too long for this encoder');
      out.push(Buffer.from([0xd9, s.length]), s);
    } else if (Buffer.isBuffer(v)) {
      if (v.length > 255) throw new Error('msgpack(): bin too long for this encoder');
      out.push(Buffer.from([0xc4, v.length]), v);
    } else if (Array.isArray(v)) {
      const h = Buffer.alloc(3);
      h[0] = 0xdc;
      h.writeUInt16BE(v.length, 1);
      out.push(h);
      v.forEach(put);
    } else if (typeof v === 'object') {
      const entries = Object.entries(v as object);
      out.push(Buffer.from([0x80 | entries.length]));
      for (const [k, x] of entries) { put(k); put(x); }
    } else {
      throw new Error(`msgpack(): cannot encode ${typeof v}`);
    }
  };
  put(v);
  return Buffer.concat(out);
}

/** One message: the 8-byte prefix (kind, reserved zeroes, header length), header, payloads. */
export function frame(kind: number, header: Buffer, ...payloads: Buffer[]): Buffer {
  const prefix = Buffer.alloc(8);
  prefix[0] = kind;
  prefix.writeUInt32LE(header.length, 4);
  return Buffer.concat([prefix, header, ...payloads]);
}
