// Hostile peers for the bounded-memory tests (issue 12): a WebSocket peer written byte by byte
// on a raw TCP socket (frames the wsblk client never sends: fragments, pings, half frames), a
// hostile server for the client's side, a healthy client that verifies its I/O meanwhile, and
// a watch on a real process's resident memory that stops an attack before it hurts the machine.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { TestContext } from 'node:test';
import {
  Op, PROTOCOL_VERSION, SUBPROTOCOL, acceptKey, decodeMessage, encodeHello, encodeWelcome, newKey, type Welcome,
} from '@wsblk/shared';
import { RemoteDisk } from '@wsblk/client';
import { WSBLK, freePort, sleep, startProc, waitForPort, wsblk, type Proc } from './procs.js';
import { io, pattern } from './server.js';

export const MiB = 1 << 20;
export const GiB = 1 << 30;

export const OPCODE = { continuation: 0, binary: 2, close: 8, ping: 9, pong: 10 } as const;

/** Bytes as whole MiB, for messages. */
export const mib = (n: number) => `${Math.round(n / MiB)} MiB`;

// --- resident memory ------------------------------------------------------------------------

/** A process's resident memory (VmRSS) in bytes; 0 once it is gone. */
export function rssOf(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

export interface RssLimits {
  /** The growth the test asserts stays under. */
  bound: number;
  /** Growth at which the attack stops (the unfixed side has failed by then): 2 x bound. */
  stopAt?: number;
  /** Resident size at which the process is SIGKILLed (the machine is shared): 3 GiB. */
  killAt?: number;
}

/**
 * Samples a process's RSS every 50 ms from a baseline taken now. `over` turns true once the
 * growth passes stopAt (attacks poll it); past killAt the process is killed at once.
 */
export class RssWatch {
  readonly baseline: number;
  peak: number;
  killed = false;
  readonly stopAt: number;
  private readonly killAt: number;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly proc: Proc, readonly limits: RssLimits) {
    this.stopAt = limits.stopAt ?? 2 * limits.bound;
    this.killAt = limits.killAt ?? 3 * GiB;
    this.baseline = rssOf(proc.child.pid!);
    this.peak = this.baseline;
    this.timer = setInterval(() => this.sample(), 50);
  }

  sample(): number {
    const rss = rssOf(this.proc.child.pid!);
    if (rss > this.peak) this.peak = rss;
    if (rss > this.killAt && !this.killed) {
      this.killed = true;
      this.proc.child.kill('SIGKILL');
    }
    return rss;
  }

  /** Largest growth over the baseline seen so far. */
  get growth(): number {
    return this.peak - this.baseline;
  }

  get over(): boolean {
    return this.growth > this.stopAt || this.killed;
  }

  stop(): void {
    clearInterval(this.timer);
    this.sample();
  }

  /** One line for the test's diagnostics and failure messages. */
  describe(): string {
    return `RSS ${mib(this.baseline)} -> peak ${mib(this.peak)}: growth ${mib(this.growth)} (bound ${mib(this.limits.bound)})`
      + (this.killed ? ', KILLED at the 3 GiB safety limit' : '');
  }
}

// --- frames ---------------------------------------------------------------------------------

export interface FrameOptions {
  fin?: boolean;
  /** Client frames are masked (with a random key), server frames are not. */
  masked?: boolean;
  /** The length the header claims (default: the payload's): a half-sent frame claims more. */
  claimed?: number;
}

/** One WebSocket frame, written by hand. */
export function wsFrame(opcode: number, payload: Buffer = Buffer.alloc(0), opts: FrameOptions = {}): Buffer {
  const { fin = true, masked = true, claimed = payload.length } = opts;
  const lenBytes = claimed < 126 ? 0 : claimed < 65536 ? 2 : 8;
  const head = Buffer.alloc(2 + lenBytes + (masked ? 4 : 0));
  head[0] = (fin ? 0x80 : 0) | opcode;
  head[1] = (masked ? 0x80 : 0) | (lenBytes === 0 ? claimed : lenBytes === 2 ? 126 : 127);
  if (lenBytes === 2) head.writeUInt16BE(claimed, 2);
  if (lenBytes === 8) head.writeBigUInt64BE(BigInt(claimed), 2);
  if (!masked) return Buffer.concat([head, payload]);
  const key = randomBytes(4);
  key.copy(head, head.length - 4);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i]! ^= key[i & 3]!;
  return Buffer.concat([head, body]);
}

/** `frame` repeated to about `bytes` bytes: one write of a flood. */
export function repeated(frame: Buffer, bytes = MiB): Buffer {
  return Buffer.concat(new Array<Buffer>(Math.max(1, Math.floor(bytes / frame.length))).fill(frame));
}

/** Reads frames from a byte stream (either direction), for the little the hostile ends read. */
class FrameParser {
  private pending = Buffer.alloc(0);

  /** Calls onFrame for each complete frame in what came so far. */
  push(chunk: Buffer, onFrame: (opcode: number, payload: Buffer) => void): void {
    let buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    for (;;) {
      if (buf.length < 2) break;
      const masked = (buf[1]! & 0x80) !== 0;
      let len = buf[1]! & 0x7f;
      let at = 2;
      if (len === 126) {
        if (buf.length < 4) break;
        len = buf.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        if (buf.length < 10) break;
        len = Number(buf.readBigUInt64BE(2));
        at = 10;
      }
      const keyAt = at;
      if (masked) at += 4;
      if (buf.length < at + len) break;
      const payload = Buffer.from(buf.subarray(at, at + len));
      if (masked) for (let i = 0; i < len; i++) payload[i]! ^= buf[keyAt + (i & 3)]!;
      onFrame(buf[0]! & 0x0f, payload);
      buf = buf.subarray(at + len);
    }
    this.pending = Buffer.from(buf);
  }
}

// --- a hostile client -----------------------------------------------------------------------

/**
 * A WebSocket client on a raw TCP socket: the upgrade and every frame are written by hand, so
 * it can send what no well-behaved client would. It reads what the server sends (to see the
 * welcome, pings and the close) until stopReading(); it answers pings only when told to.
 */
export class RawPeer {
  /** Binary messages received. */
  readonly messages: Buffer[] = [];
  pings = 0;
  answerPings = false;
  /** The code of the server's close frame, if one came. */
  closeCode: number | undefined;
  /** When the server closed (close frame, end or reset), performance.now(). */
  closedAt: number | undefined;
  readonly closed: Promise<number>;
  private onClosed!: (at: number) => void;
  private waiter: (() => void) | undefined;
  private readonly parser = new FrameParser();

  private constructor(readonly socket: Socket) {
    this.closed = new Promise((r) => { this.onClosed = r; });
    socket.on('error', () => {});
    socket.on('end', () => this.markClosed());
    socket.on('close', () => this.markClosed());
  }

  /** Connects and upgrades to /<exportName>; rejects unless the server answers 101. */
  static open(port: number, exportName = 'd0', timeoutMs = 5000): Promise<RawPeer> {
    const socket = createConnection(port, '127.0.0.1');
    const peer = new RawPeer(socket);
    const key = newKey();
    return new Promise((resolve, reject) => {
      let head = Buffer.alloc(0);
      const timer = setTimeout(() => { socket.destroy(); reject(new Error(`no 101 within ${timeoutMs} ms`)); }, timeoutMs);
      const onData = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        socket.off('data', onData);
        clearTimeout(timer);
        const text = head.toString('latin1', 0, end);
        if (!text.startsWith('HTTP/1.1 101') || !text.includes(acceptKey(key))) {
          socket.destroy();
          return reject(new Error(`upgrade refused: ${text.split('\r\n')[0]}`));
        }
        socket.on('data', (c: Buffer) => peer.onBytes(c));
        peer.onBytes(head.subarray(end + 4));
        resolve(peer);
      };
      socket.on('data', onData);
      socket.once('close', () => { clearTimeout(timer); reject(new Error('connection closed during the upgrade')); });
      socket.write([
        `GET /${exportName} HTTP/1.1`, 'Host: 127.0.0.1', 'Upgrade: websocket', 'Connection: Upgrade',
        `Sec-WebSocket-Key: ${key}`, 'Sec-WebSocket-Version: 13', `Sec-WebSocket-Protocol: ${SUBPROTOCOL}`, '', '',
      ].join('\r\n'));
    });
  }

  /**
   * Sends a hello (a new, read-only session: the healthy client is the export's one writer;
   * every attack here needs only reads) and waits for the welcome.
   */
  async hello(timeoutMs = 5000): Promise<Welcome> {
    this.socket.write(wsFrame(OPCODE.binary, encodeHello({
      version: PROTOCOL_VERSION, clientId: 'hostile-peer', features: [], maxPayload: 4 * MiB, readOnly: true,
    })));
    const deadline = performance.now() + timeoutMs;
    while (this.messages.length === 0) {
      if (this.closedAt !== undefined) throw new Error(`closed before the welcome (code ${this.closeCode})`);
      if (performance.now() > deadline) throw new Error(`no welcome within ${timeoutMs} ms`);
      await new Promise<void>((r) => { this.waiter = r; setTimeout(r, 50); });
    }
    const msg = decodeMessage(this.messages.shift()!);
    if (msg.kind !== 'welcome') throw new Error(`expected a welcome, got ${msg.kind}`);
    return msg.welcome;
  }

  /** A peer that upgraded and said hello (a new session); destroyed after the test. */
  static async greeted(t: TestContext, port: number): Promise<RawPeer> {
    const peer = await RawPeer.open(port);
    t.after(() => peer.destroy());
    await peer.hello();
    return peer;
  }

  /** Never reads again: what the server sends piles up in the kernel, then in the server. */
  stopReading(): void {
    this.socket.pause();
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onBytes(chunk: Buffer): void {
    this.parser.push(chunk, (opcode, payload) => {
      if (opcode === OPCODE.ping) {
        this.pings++;
        if (this.answerPings && this.socket.writable) this.socket.write(wsFrame(OPCODE.pong, payload));
      } else if (opcode === OPCODE.close) {
        this.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        this.markClosed();
      } else if (opcode === OPCODE.binary) {
        this.messages.push(payload);
        this.waiter?.();
      }
    });
  }

  private markClosed(): void {
    if (this.closedAt !== undefined) return;
    this.closedAt = performance.now();
    this.onClosed(this.closedAt);
    this.waiter?.();
  }
}

// --- a flood with a budget ------------------------------------------------------------------

export interface Budget {
  /** Bytes written at most. */
  bytes: number;
  /** How long at most (ms). */
  ms: number;
  /** Stops early when this turns true (the watched process grew past its stop mark). */
  stop?: () => boolean;
}

export interface FloodResult {
  bytes: number;
  ms: number;
  /** Why it ended: 'closed' (the other end closed), 'bytes', 'time' or 'stopped'. */
  ended: 'closed' | 'bytes' | 'time' | 'stopped';
}

/**
 * Writes `chunk` again and again within the budget, never more than 4 MiB queued in this
 * process (when the other end stops reading, the flood waits, as TCP makes it).
 */
export async function flood(socket: Socket, chunk: Buffer, budget: Budget): Promise<FloodResult> {
  const t0 = performance.now();
  let bytes = 0;
  const result = (ended: FloodResult['ended']): FloodResult => ({ bytes, ms: Math.round(performance.now() - t0), ended });
  for (;;) {
    if (socket.destroyed || !socket.writable) return result('closed');
    if (budget.stop?.()) return result('stopped');
    if (bytes >= budget.bytes) return result('bytes');
    if (performance.now() - t0 >= budget.ms) return result('time');
    if (socket.writableLength < 4 * MiB) {
      socket.write(chunk);
      bytes += chunk.length;
      await new Promise((r) => setImmediate(r));
    } else {
      await sleep(20);
    }
  }
}

// --- the server under attack ----------------------------------------------------------------

let helpText: Promise<string> | undefined;

/** The options `wsblk serve --help` lists (some exist only once issue 12's fix is in). */
export function serveHelp(): Promise<string> {
  helpText ??= wsblk(['serve', '--help']).then((r) => r.stdout + r.stderr);
  return helpText;
}

/** Whether `wsblk serve` takes this option. */
export async function serveHas(option: string): Promise<boolean> {
  return new RegExp(`(^|\\s)${option}\\b`, 'm').test(await serveHelp());
}

/** A timeout option of issue 12's fix: the short value where serve takes it, else its default. */
export interface TimeoutOption {
  /** Seconds the server will use. */
  seconds: number;
  /** What to add to serve's command line. */
  args: string[];
  /** How the value was chosen, for the diagnostics. */
  how: string;
}

export async function timeoutOption(option: string, short: number, fallback: number): Promise<TimeoutOption> {
  return (await serveHas(option))
    ? { seconds: short, args: [option, String(short)], how: `${option} ${short}` }
    : { seconds: fallback, args: [], how: `default ${fallback} s: serve has no ${option}` };
}

export interface Target {
  proc: Proc;
  port: number;
  url: string;
}

/** `wsblk serve` with a 256 MiB RAM export `d0`, token-less, on 127.0.0.1; killed after the test. */
export async function startTarget(t: TestContext, extraArgs: string[] = []): Promise<Target> {
  const port = await freePort();
  const proc = startProc(process.execPath, [WSBLK, 'serve', '--listen', `127.0.0.1:${port}`, '--export', 'd0=memory:256M', ...extraArgs]);
  t.after(() => { proc.child.kill('SIGKILL'); });
  await Promise.race([
    waitForPort(port),
    proc.exited.then((code) => { throw new Error(`server exited (${code}) before listening:\n${proc.output()}`); }),
  ]);
  return { proc, port, url: `ws://127.0.0.1:${port}/d0` };
}

/** Whether a child process still runs. */
export function alive(proc: Proc): boolean {
  return proc.child.exitCode === null && proc.child.signalCode === null;
}

// --- a healthy client -----------------------------------------------------------------------

/**
 * A well-behaved client beside the attack: RemoteDisk in this process writes a pattern over a
 * 1 MiB region in 64 KiB blocks, reads it back and compares, round after round.
 */
export class HealthyClient {
  rounds = 0;
  /** When each round verified (performance.now()). */
  readonly roundTimes: number[] = [];
  readonly errors: string[] = [];
  private running: Promise<void> | undefined;
  private stopping = false;
  private static readonly BLOCK = 64 << 10;
  private static readonly BLOCKS = 16;
  private static readonly OFFSET = 200 * MiB;

  private constructor(readonly disk: RemoteDisk) {}

  /** Connects, runs two rounds (so the server has allocated what the region needs), carries on. */
  static async start(t: TestContext, url: string): Promise<HealthyClient> {
    const disk = await RemoteDisk.connect({ url, clientId: 'healthy', ioTimeoutMs: 20_000, connectTimeoutMs: 10_000 });
    const client = new HealthyClient(disk);
    t.after(() => client.stop());
    client.running = client.loop();
    await client.waitRounds(2, 10_000);
    return client;
  }

  /** Waits until `n` rounds in all have verified; throws on a mismatch or after timeoutMs. */
  async waitRounds(n: number, timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (this.rounds < n) {
      if (this.errors.length) throw new Error(`healthy client: ${this.errors[0]}`);
      if (performance.now() > deadline) throw new Error(`healthy client: ${this.rounds} of ${n} rounds verified after ${timeoutMs} ms`);
      await sleep(20);
    }
  }

  get reconnects(): number {
    return this.disk.stats.reconnects;
  }

  /** Stops the loop; what is still outstanding after 2 s fails (the server may be gone). */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    await this.disk.close(2000);
    await this.running;
  }

  private async loop(): Promise<void> {
    const { BLOCK, BLOCKS, OFFSET } = HealthyClient;
    for (let round = 1; !this.stopping && this.errors.length === 0; round++) {
      const blocks = [...Array(BLOCKS).keys()];
      const data = blocks.map((i) => pattern(BLOCK, round * BLOCKS + i));
      const writes = await Promise.all(blocks.map((i) => io(this.disk, { op: Op.Write, offset: OFFSET + i * BLOCK, length: BLOCK, payload: data[i]! })));
      const reads = await Promise.all(blocks.map((i) => io(this.disk, { op: Op.Read, offset: OFFSET + i * BLOCK, length: BLOCK })));
      for (const i of blocks) {
        if (writes[i]!.status !== 0) this.errors.push(`round ${round}: WRITE of block ${i} failed with errno ${writes[i]!.status}`);
        else if (reads[i]!.status !== 0) this.errors.push(`round ${round}: READ of block ${i} failed with errno ${reads[i]!.status}`);
        else if (!reads[i]!.data!.equals(data[i]!)) this.errors.push(`round ${round}: block ${i} read back differs from what was written`);
      }
      if (this.errors.length === 0) {
        this.rounds++;
        this.roundTimes.push(performance.now());
      }
      // A steady trickle, not a benchmark: the machine is shared.
      await sleep(50);
    }
  }
}

/** The longest time the healthy client went without verifying a round may be this long (ms). */
const MAX_GAP_MS = 5000;

/** A server under attack: the process, a healthy client beside it, the watch on its RSS. */
export interface Arena {
  target: Target;
  healthy: HealthyClient;
  watch: RssWatch;
  /** When the watch started (performance.now()): the attack comes after. */
  since: number;
}

/** Starts a server (with extra serve options), a healthy client, then the RSS watch. */
export async function arena(t: TestContext, bound: number, extraArgs: string[] = []): Promise<Arena> {
  const target = await startTarget(t, extraArgs);
  const healthy = await HealthyClient.start(t, target.url);
  const watch = new RssWatch(target.proc, { bound });
  t.after(() => watch.stop());
  return { target, healthy, watch, since: performance.now() };
}

/**
 * The close of an attack test: the server lives, the healthy client verified rounds all along
 * (never MAX_GAP_MS without one) and two more after the attack, and never lost its connection.
 * Stops the healthy client; returns a line for the diagnostics.
 */
export async function assertHealthy(t: TestContext, { target, healthy, since }: Arena): Promise<void> {
  if (!alive(target.proc)) throw new Error(`the server died during the attack:\n${target.proc.output().slice(-2000)}`);
  await healthy.waitRounds(healthy.rounds + 2, 15_000);
  const times = [since, ...healthy.roundTimes.filter((at) => at > since)];
  let gap = 0;
  for (let i = 1; i < times.length; i++) gap = Math.max(gap, times[i]! - times[i - 1]!);
  t.diagnostic(`healthy client: ${times.length - 1} rounds verified since the attack began, at most ${Math.round(gap)} ms apart`);
  if (gap > MAX_GAP_MS) throw new Error(`the healthy client verified nothing for ${Math.round(gap)} ms during the attack`);
  if (healthy.reconnects !== 0) throw new Error(`the healthy client lost its connection ${healthy.reconnects} times`);
  await healthy.stop();
}

// --- a hostile server -----------------------------------------------------------------------

/** What a hostile server does with a client once it has sent the welcome. */
export type Attack = (socket: Socket) => void;

/**
 * A WebSocket server on a raw TCP socket for the client's side: it answers the upgrade and
 * the hello by hand (a 256 MiB export), then runs `attack` on the first connection; later
 * connections (the client reconnecting) get a welcome and silence.
 */
export class HostileServer {
  connections = 0;
  private readonly sockets = new Set<Socket>();
  private closing = false;

  private constructor(private readonly server: Server, readonly port: number) {}

  static async start(t: TestContext, attack: Attack): Promise<HostileServer> {
    let self: HostileServer | undefined;
    const server = createServer((socket) => self!.accept(socket, attack));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    self = new HostileServer(server, (server.address() as { port: number }).port);
    t.after(() => self!.close());
    return self;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}/d0`;
  }

  /** Stops listening and cuts every connection (without waiting for a client still reconnecting). */
  close(): void {
    this.closing = true;
    this.server.close();
    for (const s of this.sockets) s.destroy();
  }

  private accept(socket: Socket, attack: Attack): void {
    if (this.closing) return void socket.destroy();
    const n = ++this.connections;
    this.sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => this.sockets.delete(socket));
    let head = Buffer.alloc(0);
    const parser = new FrameParser();
    let welcomed = false;
    const onFrames = (chunk: Buffer) => parser.push(chunk, (opcode) => {
      if (opcode !== OPCODE.binary || welcomed) return;
      welcomed = true;
      socket.off('data', onFrames);
      socket.write(wsFrame(OPCODE.binary, encodeWelcome(HOSTILE_WELCOME), { masked: false }));
      if (n === 1) attack(socket);
      else socket.resume();
    });
    const onHead = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onHead);
      const key = /^sec-websocket-key:\s*(\S+)/im.exec(head.toString('latin1', 0, end))?.[1] ?? '';
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
        + `Sec-WebSocket-Accept: ${acceptKey(key)}\r\nSec-WebSocket-Protocol: ${SUBPROTOCOL}\r\n\r\n`);
      socket.on('data', onFrames);
      onFrames(head.subarray(end + 4));
    };
    socket.on('data', onHead);
  }
}

const HOSTILE_WELCOME: Welcome = {
  version: PROTOCOL_VERSION, exportName: 'd0', size: 256 * MiB, blockSize: 512, readOnly: false,
  flush: true, fua: true, discard: true, writeZeroes: true, maxPayload: 4 * MiB,
  sessionId: '0123456789abcdef0123456789abcdef', epoch: 1, resumed: false, nextSeq: 1, features: [],
};

/** `wsblk connect --nbd --foreground` against `url`; resolves once the daemon is ready. Stopped after the test. */
export async function startDaemon(t: TestContext, url: string, dir: string): Promise<Proc> {
  const proc = startProc(process.execPath, [WSBLK, 'connect', url, '--nbd', `${dir}/d0.sock`, '--foreground'], { WSBLK_RUN_DIR: `${dir}/run` });
  t.after(() => { proc.child.kill('SIGKILL'); });
  const deadline = Date.now() + 20_000;
  while (!proc.output().includes('nbd+unix://')) {
    if (Date.now() > deadline || !alive(proc)) throw new Error(`daemon did not become ready:\n${proc.output()}`);
    await sleep(50);
  }
  return proc;
}
