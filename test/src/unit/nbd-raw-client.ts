// A deliberately small NBD client for unit tests: raw bytes, one call per protocol step, so a
// test can also send what a well-behaved client never would.
import { connect, type Socket } from 'node:net';

export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;

export const OPT = { exportName: 1, abort: 2, list: 3, startTls: 5, info: 6, go: 7, structuredReply: 8 } as const;
export const REP = { ack: 1, server: 2, info: 3, errUnsup: 0x80000001, errInvalid: 0x80000003, errUnknown: 0x80000006, errTooBig: 0x80000009 } as const;
export const INFO = { export: 0, name: 1, description: 2, blockSize: 3 } as const;
export const CMD = { read: 0, write: 1, disc: 2, flush: 3, trim: 4, cache: 5, writeZeroes: 6, blockStatus: 7 } as const;
export const CMD_FLAG = { fua: 1, noHole: 2, df: 4 } as const;
export const TFLAG = { hasFlags: 1, readOnly: 2, flush: 4, fua: 8, trim: 32, writeZeroes: 64, multiConn: 256 } as const;

export interface OptionReply {
  option: number;
  type: number;
  data: Buffer;
}

export interface SimpleReply {
  error: number;
  cookie: bigint;
  data?: Buffer;
}

export class RawNbdClient {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private ended = false;
  /** READ cookies awaiting data, with their lengths. */
  private readonly reads = new Map<bigint, number>();
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.on('data', (c: Buffer) => {
      this.chunks.push(c);
      this.buffered += c.length;
      this.pump();
    });
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => {});
    const onEnd = () => {
      this.ended = true;
      this.pump();
    };
    socket.once('end', onEnd);
    socket.once('close', onEnd);
  }

  static connect(path: string): Promise<RawNbdClient> {
    return new Promise((resolve, reject) => {
      const s = connect(path);
      s.once('connect', () => resolve(new RawNbdClient(s)));
      s.once('error', reject);
    });
  }

  /** Connects, checks the greeting and sends client flags (fixed newstyle + no zeroes). */
  static async open(path: string, clientFlags = 3): Promise<RawNbdClient> {
    const c = await RawNbdClient.connect(path);
    await c.readGreeting();
    c.write(u32(clientFlags));
    return c;
  }

  /** open() then NBD_OPT_GO on `name`. */
  static async ready(path: string, name = ''): Promise<RawNbdClient> {
    const c = await RawNbdClient.open(path);
    const replies = await c.go(name);
    const last = replies[replies.length - 1]!;
    if (last.type !== REP.ack) throw new Error(`GO refused: 0x${last.type.toString(16)}`);
    return c;
  }

  async readGreeting(): Promise<number> {
    const g = await this.read(18);
    if (g.readBigUInt64BE(0) !== NBDMAGIC || g.readBigUInt64BE(8) !== IHAVEOPT) throw new Error('bad greeting');
    return g.readUInt16BE(16);
  }

  write(b: Buffer): void {
    this.socket.write(b);
  }

  /** Exactly n bytes; rejects if the server closes first. */
  read(n: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
      this.pump();
    });
  }

  /** Resolves true when the server closes the connection without sending more. */
  async closedByServer(): Promise<boolean> {
    try {
      await this.read(1);
      return false;
    } catch {
      return true;
    }
  }

  sendOption(option: number, data: Buffer = Buffer.alloc(0), length = data.length): void {
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(IHAVEOPT, 0);
    h.writeUInt32BE(option, 8);
    h.writeUInt32BE(length, 12);
    this.write(Buffer.concat([h, data]));
  }

  async readOptionReply(): Promise<OptionReply> {
    const h = await this.read(20);
    if (h.readBigUInt64BE(0) !== OPTION_REPLY_MAGIC) throw new Error('bad option reply magic');
    const length = h.readUInt32BE(16);
    const data = length > 0 ? await this.read(length) : Buffer.alloc(0);
    return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data };
  }

  /** Reads replies up to and including the first that is not NBD_REP_INFO / NBD_REP_SERVER. */
  async readOptionReplies(): Promise<OptionReply[]> {
    const out: OptionReply[] = [];
    for (;;) {
      const r = await this.readOptionReply();
      out.push(r);
      if (r.type !== REP.info && r.type !== REP.server) return out;
    }
  }

  info(name: string, requests: number[] = [], option: number = OPT.info): Promise<OptionReply[]> {
    this.sendOption(option, infoData(name, requests));
    return this.readOptionReplies();
  }

  go(name: string, requests: number[] = []): Promise<OptionReply[]> {
    return this.info(name, requests, OPT.go);
  }

  request(type: number, cookie: bigint, offset: number, length: number, flags = 0, payload?: Buffer): void {
    const h = requestHeader(type, cookie, offset, length, flags);
    if (type === CMD.read) this.reads.set(cookie, length);
    this.write(payload ? Buffer.concat([h, payload]) : h);
  }

  async readReply(): Promise<SimpleReply> {
    const h = await this.read(16);
    if (h.readUInt32BE(0) !== SIMPLE_REPLY_MAGIC) throw new Error('bad reply magic');
    const error = h.readUInt32BE(4);
    const cookie = h.readBigUInt64BE(8);
    const length = this.reads.get(cookie);
    this.reads.delete(cookie);
    if (error === 0 && length !== undefined && length > 0) return { error, cookie, data: await this.read(length) };
    return { error, cookie };
  }

  async call(type: number, offset: number, length: number, flags = 0, payload?: Buffer): Promise<SimpleReply> {
    const cookie = BigInt(Math.floor(Math.random() * 2 ** 48));
    this.request(type, cookie, offset, length, flags, payload);
    const r = await this.readReply();
    if (r.cookie !== cookie) throw new Error('unexpected cookie');
    return r;
  }

  close(): void {
    this.socket.destroy();
  }

  private pump(): void {
    const w = this.waiter;
    if (!w) return;
    if (this.buffered >= w.n) {
      const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
      const out = all.subarray(0, w.n);
      const rest = all.subarray(w.n);
      this.chunks = rest.length > 0 ? [rest] : [];
      this.buffered = rest.length;
      this.waiter = null;
      w.resolve(out);
    } else if (this.ended) {
      this.waiter = null;
      w.reject(new Error(`connection closed with ${this.buffered} of ${w.n} bytes`));
    }
  }
}

/** The 28-byte header of a transmission request. */
export function requestHeader(type: number, cookie: bigint, offset: number, length: number, flags = 0): Buffer {
  const h = Buffer.alloc(28);
  h.writeUInt32BE(REQUEST_MAGIC, 0);
  h.writeUInt16BE(flags, 4);
  h.writeUInt16BE(type, 6);
  h.writeBigUInt64BE(cookie, 8);
  h.writeBigUInt64BE(BigInt(offset), 16);
  h.writeUInt32BE(length, 24);
  return h;
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
}

export function infoData(name: string, requests: number[]): Buffer {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(4 + n.length + 2 + 2 * requests.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  b.writeUInt16BE(requests.length, 4 + n.length);
  requests.forEach((r, i) => b.writeUInt16BE(r, 6 + n.length + 2 * i));
  return b;
}

/** The INFO replies of a GO/INFO answer, by type. */
export function infos(replies: OptionReply[]): Map<number, Buffer> {
  const m = new Map<number, Buffer>();
  for (const r of replies) if (r.type === REP.info) m.set(r.data.readUInt16BE(0), r.data);
  return m;
}
