// A small NBD client over a Unix socket for the lab's history writer: fixed-newstyle handshake
// with NBD_OPT_GO, then one request at a time (READ, WRITE, FLUSH) with simple replies.
import { connect, type Socket } from 'node:net';

const NBDMAGIC = 0x4e42444d41474943n;
const IHAVEOPT = 0x49484156454f5054n;
const REPLY_MAGIC = 0x3e889045565a9n;
const REQUEST_MAGIC = 0x25609513;
const SIMPLE_REPLY_MAGIC = 0x67446698;
const OPT_GO = 7;
const REP_ACK = 1;
const REP_INFO = 3;
const CMD = { read: 0, write: 1, flush: 3 } as const;

export class NbdClient {
  size = 0;
  private buf: Buffer = Buffer.alloc(0);
  private want: { n: number; done: (b: Buffer) => void; fail: (e: Error) => void } | undefined;
  private error: Error | undefined;
  private cookie = 0n;

  private constructor(private readonly sock: Socket) {
    sock.on('data', (d: Buffer) => {
      this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
      this.pump();
    });
    const gone = (e?: Error) => {
      this.error ??= e ?? new Error('the NBD server closed the connection');
      this.pump();
    };
    sock.on('error', gone);
    sock.on('close', () => gone());
  }

  static async open(path: string): Promise<NbdClient> {
    const sock = connect(path);
    await new Promise<void>((ok, fail) => sock.once('connect', ok).once('error', fail));
    const c = new NbdClient(sock);
    const greeting = await c.read(18);
    if (greeting.readBigUInt64BE(0) !== NBDMAGIC || greeting.readBigUInt64BE(8) !== IHAVEOPT) throw new Error(`${path}: not an NBD server`);
    const flags = Buffer.alloc(4);
    flags.writeUInt32BE(3, 0); // client flags: fixed newstyle, no zeroes
    const opt = Buffer.alloc(16 + 6); // then GO: name length 0 (the default export), no info requests
    opt.writeBigUInt64BE(IHAVEOPT, 0);
    opt.writeUInt32BE(OPT_GO, 8);
    opt.writeUInt32BE(6, 12);
    sock.write(Buffer.concat([flags, opt]));
    for (;;) {
      const h = await c.read(20);
      if (h.readBigUInt64BE(0) !== REPLY_MAGIC) throw new Error(`${path}: bad option reply`);
      const type = h.readUInt32BE(12);
      const data = await c.read(h.readUInt32BE(16));
      if (type === REP_INFO && data.readUInt16BE(0) === 0) c.size = Number(data.readBigUInt64BE(2));
      else if (type === REP_ACK) return c;
      else if (type !== REP_INFO) throw new Error(`${path}: NBD_OPT_GO refused (0x${type.toString(16)})`);
    }
  }

  /** Resolves with the NBD error number (0: done). */
  async write(offset: number, data: Buffer): Promise<number> {
    return (await this.request(CMD.write, offset, data.length, data)).error;
  }

  async readAt(offset: number, length: number): Promise<{ error: number; data?: Buffer }> {
    return this.request(CMD.read, offset, length);
  }

  async flush(): Promise<number> {
    return (await this.request(CMD.flush, 0, 0)).error;
  }

  close(): void {
    this.sock.destroy();
  }

  private async request(type: number, offset: number, length: number, payload?: Buffer): Promise<{ error: number; data?: Buffer }> {
    const h = Buffer.alloc(28);
    const cookie = ++this.cookie;
    h.writeUInt32BE(REQUEST_MAGIC, 0);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(cookie, 8);
    h.writeBigUInt64BE(BigInt(offset), 16);
    h.writeUInt32BE(length, 24);
    this.sock.write(payload ? Buffer.concat([h, payload]) : h);
    const r = await this.read(16);
    if (r.readUInt32BE(0) !== SIMPLE_REPLY_MAGIC || r.readBigUInt64BE(8) !== cookie) throw new Error('NBD: unexpected reply');
    const error = r.readUInt32BE(4);
    return type === CMD.read && error === 0 ? { error, data: await this.read(length) } : { error };
  }

  private read(n: number): Promise<Buffer> {
    return new Promise((done, fail) => {
      this.want = { n, done, fail };
      this.pump();
    });
  }

  private pump(): void {
    const w = this.want;
    if (!w) return;
    if (this.buf.length >= w.n) {
      this.want = undefined;
      const out = Buffer.from(this.buf.subarray(0, w.n));
      this.buf = this.buf.subarray(w.n);
      w.done(out);
    } else if (this.error) {
      this.want = undefined;
      w.fail(this.error);
    }
  }
}
