// FrameReader (shared/src/ws/frame-reader.ts) without sockets: frames built by hand, fed through push()
// (the server's 'data' chunks) and through nextBuffer()/filled() (the client's onread), with a
// sink that records everything. Checks byte-exact payloads over every length encoding, the
// handling of masks by role, fragmentation, every protocol error (once, nothing after), and that
// buffers handed over are never written again by later reads. Then WsConn over a fake socket:
// nothing reaches its handlers before start(), and start() delivers what came early.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { FrameReader, WS_CLOSE, WsConn, type FrameSink } from '@wsblk/shared';
import { between, bytes, rng } from '../support/random.js';
import { encodeFrame, header64, readFrames, type FrameSpec } from '../support/ws-wire.js';

const KiB = 1024;
const MiB = 1 << 20;

/** Opcodes (RFC 6455 5.2). */
const OP = { cont: 0, text: 1, binary: 2, close: 8, ping: 9, pong: 10 } as const;

// --- helpers -----------------------------------------------------------------------------------

type Event =
  | { kind: 'message'; data: Buffer; binary: boolean }
  | { kind: 'control'; opcode: number; payload: Buffer }
  | { kind: 'error'; code: number; reason: string };

/** A sink that records every call, keeping the buffers exactly as handed over. */
class Recorder implements FrameSink {
  readonly events: Event[] = [];
  onMessage(data: Buffer, binary: boolean): void {
    this.events.push({ kind: 'message', data, binary });
  }
  onControl(opcode: number, payload: Buffer): void {
    this.events.push({ kind: 'control', opcode, payload });
  }
  onProtocolError(code: number, reason: string): void {
    this.events.push({ kind: 'error', code, reason });
  }
  /** Every buffer handed over (message data and control payloads). */
  buffers(): Buffer[] {
    const out: Buffer[] = [];
    for (const e of this.events) {
      if (e.kind === 'message') out.push(e.data);
      else if (e.kind === 'control') out.push(e.payload);
    }
    return out;
  }
}

type Expected =
  | { kind: 'message'; data: Buffer; binary?: boolean }
  | { kind: 'control'; opcode: number; payload?: Buffer }
  | { kind: 'error'; code: number };

/** Compares the recorded events with the expected ones, buffers byte by byte (no huge diffs). */
function checkEvents(rec: Recorder, expected: readonly Expected[], label: string): void {
  const got = rec.events;
  const summary = (e: Event | Expected) =>
    e.kind === 'message' ? `message(${e.data.length})` : e.kind === 'control' ? `control(${e.opcode})` : `error(${e.code})`;
  assert.equal(got.length, expected.length, `${label}: events ${got.map(summary).join(' ')} vs expected ${expected.map(summary).join(' ')}`);
  for (let i = 0; i < expected.length; i++) {
    const g = got[i]!;
    const x = expected[i]!;
    assert.equal(g.kind, x.kind, `${label}: event ${i} is ${summary(g)}, expected ${summary(x)}`);
    if (g.kind === 'message' && x.kind === 'message') {
      assert.equal(g.binary, x.binary ?? true, `${label}: event ${i} binary flag`);
      assert.equal(g.data.length, x.data.length, `${label}: event ${i} length`);
      if (!g.data.equals(x.data)) {
        let at = 0;
        while (g.data[at] === x.data[at]) at++;
        assert.fail(`${label}: event ${i} (message of ${x.data.length} bytes) differs first at byte ${at}`);
      }
    } else if (g.kind === 'control' && x.kind === 'control') {
      assert.equal(g.opcode, x.opcode, `${label}: event ${i} opcode`);
      assert.ok(g.payload.equals(x.payload ?? Buffer.alloc(0)), `${label}: event ${i} control payload`);
    } else if (g.kind === 'error' && x.kind === 'error') {
      assert.equal(g.code, x.code, `${label}: event ${i} close code (reason: ${g.reason})`);
      assert.ok(g.reason.length > 0, `${label}: a protocol error has a reason`);
    }
  }
}

/** push() of the whole byte stream in one chunk (a copy: masked payloads are unmasked in place). */
function feedWhole(reader: FrameReader, wire: Buffer): void {
  reader.push(Buffer.from(wire));
}

/** push() of the stream cut at the given positions (ascending), each chunk a fresh buffer. */
function feedCuts(reader: FrameReader, wire: Buffer, cuts: readonly number[]): void {
  let from = 0;
  for (const at of [...cuts, wire.length]) {
    if (at > from) reader.push(Buffer.from(wire.subarray(from, at)));
    from = at;
  }
}

/** push() of chunks of random sizes: mostly small, some large. */
function feedRandomChunks(reader: FrameReader, wire: Buffer, seed: number): number {
  const r = rng(seed);
  const cuts: number[] = [];
  let at = 0;
  for (;;) {
    const p = r();
    at += p < 0.3 ? between(r, 1, 16) : p < 0.7 ? between(r, 17, 4 * KiB) : between(r, 4 * KiB, 150 * KiB);
    if (at >= wire.length) break;
    cuts.push(at);
  }
  feedCuts(reader, wire, cuts);
  return cuts.length + 1;
}

/** [start, end) of `b` inside its ArrayBuffer. */
const span = (b: Buffer): [number, number] => [b.byteOffset, b.byteOffset + b.length];

/**
 * Feeds the stream as node's onread does: each read takes nextBuffer(), copies at most its
 * length (a random amount, or `size(offered)` if given) and calls filled(n). Checks on every
 * read that the buffer offered has room (a read into 0 bytes would stall the socket) and does
 * not share a single byte with any buffer handed to the sink so far.
 */
function feedReads(reader: FrameReader, rec: Recorder, wire: Buffer, seed: number, size?: (offered: number) => number): { reads: number } {
  const r = rng(seed);
  // Buffers handed over, by the memory they live in; `seen` events already indexed.
  const held = new Map<ArrayBufferLike, Array<[number, number]>>();
  let seen = 0;
  let off = 0;
  let reads = 0;
  while (off < wire.length) {
    for (; seen < rec.events.length; seen++) {
      const e = rec.events[seen]!;
      const b = e.kind === 'message' ? e.data : e.kind === 'control' ? e.payload : null;
      if (!b || b.length === 0) continue;
      let list = held.get(b.buffer);
      if (!list) held.set(b.buffer, (list = []));
      list.push(span(b));
    }
    const dst = reader.nextBuffer();
    assert.ok(dst.length > 0, `read ${reads}: nextBuffer() offered no room`);
    const [s, e] = span(dst);
    for (const [hs, he] of held.get(dst.buffer) ?? []) {
      assert.ok(e <= hs || he <= s, `read ${reads}: nextBuffer() [${s}, ${e}) overlaps a buffer handed over [${hs}, ${he})`);
    }
    const left = wire.length - off;
    let n: number;
    if (size) n = size(dst.length);
    else {
      const p = r();
      // Like a socket: sometimes the whole offer (up to what one read brings), often a part.
      n = p < 0.35 ? Math.min(dst.length, between(r, 64 * KiB, 160 * KiB)) : p < 0.5 ? between(r, 1, 16) : between(r, 1, Math.min(dst.length, 96 * KiB));
    }
    n = Math.min(n, left, dst.length);
    assert.ok(n >= 1 && n <= dst.length, `read ${reads}: ${n} bytes into an offer of ${dst.length}`);
    wire.copy(dst, 0, off, off + n);
    reader.filled(n);
    off += n;
    reads++;
  }
  return { reads };
}

/** The stream of several frames. */
const join = (frames: readonly Buffer[]) => Buffer.concat(frames);

/** Random non-zero masking key. */
const keyOf = (r: () => number) => (Math.floor(r() * 0xffffffff) >>> 0) || 0x01020304;

/** Messages as frames, masked with random keys when `masked`, and the events they should give. */
function messages(sizes: readonly number[], masked: boolean, seed: number): { wire: Buffer; expected: Expected[] } {
  const r = rng(seed);
  const frames: Buffer[] = [];
  const expected: Expected[] = [];
  sizes.forEach((n, i) => {
    const payload = bytes(n, seed * 1000 + i);
    frames.push(encodeFrame({ opcode: OP.binary, payload, mask: masked ? keyOf(r) : null }));
    expected.push({ kind: 'message', data: payload });
  });
  return { wire: join(frames), expected };
}

/** Asserts that every buffer handed over still holds what it held (nothing wrote over it). */
function checkKept(rec: Recorder, expected: readonly Expected[], label: string): void {
  checkEvents(rec, expected, `${label} (buffers re-checked at the end)`);
}

const BIG_SIZES = [0, 1, 125, 126, 65535, 65536, 200 * KiB, 1 * MiB];
const SMALL_SIZES = [0, 1, 125, 126, 127, 300];

// --- tests -------------------------------------------------------------------------------------

describe('FrameReader: lengths 0 B .. 1 MiB, 7/16/64-bit encodings, byte-exact', () => {
  for (const role of ['client', 'server'] as const) {
    const masked = role === 'server';
    const max = 2 * MiB;

    test(`${role} reader: one push() with every frame`, () => {
      const { wire, expected } = messages(BIG_SIZES, masked, 1);
      const rec = new Recorder();
      feedWhole(new FrameReader(rec, masked, max), wire);
      checkEvents(rec, expected, 'one chunk');
    });

    test(`${role} reader: the small sequence pushed in two chunks, cut at every byte boundary`, () => {
      const { wire, expected } = messages(SMALL_SIZES, masked, 2);
      for (let cut = 1; cut < wire.length; cut++) {
        const rec = new Recorder();
        feedCuts(new FrameReader(rec, masked, max), wire, [cut]);
        checkEvents(rec, expected, `cut at ${cut}`);
      }
    });

    test(`${role} reader: the small sequence pushed one byte at a time`, () => {
      const { wire, expected } = messages(SMALL_SIZES, masked, 3);
      const rec = new Recorder();
      feedCuts(new FrameReader(rec, masked, max), wire, Array.from({ length: wire.length - 1 }, (_, i) => i + 1));
      checkEvents(rec, expected, 'byte by byte');
    });

    test(`${role} reader: the large sequence pushed in chunks cut at random (seeded)`, () => {
      for (const seed of [11, 12, 13, 14]) {
        const { wire, expected } = messages(BIG_SIZES, masked, seed);
        const rec = new Recorder();
        const chunks = feedRandomChunks(new FrameReader(rec, masked, max), wire, seed);
        assert.ok(chunks > 20, `${chunks} chunks`);
        checkEvents(rec, expected, `random chunks, seed ${seed}`);
        checkKept(rec, expected, `random chunks, seed ${seed}`);
      }
    });

    test(`${role} reader: the large sequence read through nextBuffer()/filled() in random amounts`, () => {
      for (const seed of [21, 22, 23, 24]) {
        const { wire, expected } = messages(BIG_SIZES, masked, seed);
        const rec = new Recorder();
        const reader = new FrameReader(rec, masked, max);
        const { reads } = feedReads(reader, rec, wire, seed);
        assert.ok(reads > 20, `${reads} reads`);
        checkEvents(rec, expected, `reads, seed ${seed}`);
        checkKept(rec, expected, `reads, seed ${seed}`);
      }
    });

    test(`${role} reader: reads that always fill the whole offer, and reads of one byte`, () => {
      const { wire, expected } = messages(BIG_SIZES, masked, 31);
      const rec = new Recorder();
      feedReads(new FrameReader(rec, masked, max), rec, wire, 31, (offered) => offered);
      checkEvents(rec, expected, 'greedy reads');
      checkKept(rec, expected, 'greedy reads');

      const small = messages(SMALL_SIZES, masked, 32);
      const rec1 = new Recorder();
      const { reads } = feedReads(new FrameReader(rec1, masked, max), rec1, small.wire, 32, () => 1);
      assert.equal(reads, small.wire.length);
      checkEvents(rec1, small.expected, 'one-byte reads');
    });
  }

  test('lengths around the reader\'s own thresholds (32 KiB own buffer, 128 KiB arena, 14-byte headers) in every feed', () => {
    const sizes: number[] = [];
    for (const base of [32 * KiB, 64 * KiB, 128 * KiB]) for (const d of [-15, -14, -11, -10, -2, -1, 0, 1, 2, 14]) sizes.push(base + d);
    // Small frames between the large ones move the stream across arena ends at many offsets.
    const withSmall = sizes.flatMap((n, i) => [n, i % 7, 125 + (i % 3), 16 * KiB - 3 + i]);
    for (const masked of [false, true]) {
      const { wire, expected } = messages(withSmall, masked, 41);
      const a = new Recorder();
      feedWhole(new FrameReader(a, masked, MiB), wire);
      checkEvents(a, expected, `one chunk, masked=${masked}`);
      for (const seed of [42, 43, 44]) {
        const b = new Recorder();
        feedRandomChunks(new FrameReader(b, masked, MiB), wire, seed);
        checkEvents(b, expected, `random chunks ${seed}, masked=${masked}`);
        const c = new Recorder();
        feedReads(new FrameReader(c, masked, MiB), c, wire, seed);
        checkEvents(c, expected, `random reads ${seed}, masked=${masked}`);
        checkKept(c, expected, `random reads ${seed}, masked=${masked}`);
      }
      const d = new Recorder();
      feedReads(new FrameReader(d, masked, MiB), d, wire, 45, (offered) => offered);
      checkEvents(d, expected, `greedy reads, masked=${masked}`);
    }
  });

  test('a long random stream (data, fragments, control frames) gives the same events in every feed, buffers never overwritten', () => {
    for (const masked of [false, true]) {
      const r = rng(masked ? 51 : 52);
      const frames: Buffer[] = [];
      const expected: Expected[] = [];
      const mask = () => (masked ? (r() < 0.1 ? 0 : keyOf(r)) : null);
      const size = () => {
        const p = r();
        return p < 0.5 ? between(r, 0, 200) : p < 0.8 ? between(r, 201, 20 * KiB) : p < 0.96 ? between(r, 20 * KiB, 70 * KiB) : between(r, 70 * KiB, 300 * KiB);
      };
      for (let i = 0; i < 1500; i++) {
        const p = r();
        if (p < 0.1) {
          const opcode = r() < 0.5 ? OP.ping : OP.pong;
          const payload = bytes(between(r, 0, 125), i);
          frames.push(encodeFrame({ opcode, payload, mask: mask() }));
          expected.push({ kind: 'control', opcode, payload });
        } else if (p < 0.2) {
          // A fragmented message with control frames between its fragments.
          const binary = r() < 0.8;
          const pieces = between(r, 2, 4);
          const parts: Buffer[] = [];
          const controls: Expected[] = [];
          for (let k = 0; k < pieces; k++) {
            const part = bytes(k === 0 && r() < 0.2 ? 0 : size() >> 1, i * 10 + k);
            parts.push(part);
            frames.push(encodeFrame({ opcode: k === 0 ? (binary ? OP.binary : OP.text) : OP.cont, fin: k === pieces - 1, payload: part, mask: mask() }));
            if (k < pieces - 1 && r() < 0.5) {
              const payload = bytes(between(r, 0, 125), i * 10 + k + 5);
              frames.push(encodeFrame({ opcode: OP.ping, payload, mask: mask() }));
              controls.push({ kind: 'control', opcode: OP.ping, payload });
            }
          }
          expected.push(...controls, { kind: 'message', data: Buffer.concat(parts), binary });
        } else {
          const payload = bytes(size(), i);
          const binary = r() < 0.9;
          frames.push(encodeFrame({ opcode: binary ? OP.binary : OP.text, payload, mask: mask() }));
          expected.push({ kind: 'message', data: payload, binary });
        }
      }
      const wire = join(frames);
      const max = 2 * MiB;
      const a = new Recorder();
      feedWhole(new FrameReader(a, masked, max), wire);
      checkEvents(a, expected, `one chunk, masked=${masked}`);
      const b = new Recorder();
      feedRandomChunks(new FrameReader(b, masked, max), wire, 53);
      checkEvents(b, expected, `random chunks, masked=${masked}`);
      checkKept(b, expected, `random chunks, masked=${masked}`);
      const c = new Recorder();
      feedReads(new FrameReader(c, masked, max), c, wire, 54);
      checkEvents(c, expected, `random reads, masked=${masked}`);
      checkKept(c, expected, `random reads, masked=${masked}`);
      const d = new Recorder();
      feedReads(new FrameReader(d, masked, max), d, wire, 55, (offered) => offered);
      checkEvents(d, expected, `greedy reads, masked=${masked}`);
      checkKept(d, expected, `greedy reads, masked=${masked}`);
    }
  });
});

describe('FrameReader: masking', () => {
  const sizes = [0, 1, 2, 3, 4, 5, 6, 7, 8, 125, 126, 1000, 40 * KiB, 70 * KiB];
  const keys = [0x01020304, 0xffffffff, 0x80000000, 0x000000ff, 0xdeadbeef];

  test('a server reader unmasks frames masked with non-zero keys, in every feed', () => {
    const frames: Buffer[] = [];
    const expected: Expected[] = [];
    for (const key of keys) {
      sizes.forEach((n, i) => {
        const payload = bytes(n, key ^ i);
        frames.push(encodeFrame({ opcode: OP.binary, payload, mask: key }));
        expected.push({ kind: 'message', data: payload });
      });
      // Control payloads are unmasked too.
      const ping = Buffer.from('ping payload, masked');
      frames.push(encodeFrame({ opcode: OP.ping, payload: ping, mask: key }));
      expected.push({ kind: 'control', opcode: OP.ping, payload: ping });
    }
    const wire = join(frames);
    // The frames really are masked: the payload bytes on the wire are not the payloads.
    assert.ok(!wire.includes(Buffer.from('ping payload, masked')));
    const a = new Recorder();
    feedWhole(new FrameReader(a, true, MiB), wire);
    checkEvents(a, expected, 'one chunk');
    const b = new Recorder();
    feedCuts(new FrameReader(b, true, MiB), wire, Array.from({ length: 400 }, (_, i) => i * 7 + 1));
    checkEvents(b, expected, 'small chunks then one');
    const c = new Recorder();
    feedReads(new FrameReader(c, true, MiB), c, wire, 61);
    checkEvents(c, expected, 'random reads');
  });

  test('a server reader passes frames masked with a zero key as they are', () => {
    const frames: Buffer[] = [];
    const expected: Expected[] = [];
    sizes.forEach((n, i) => {
      const payload = bytes(n, 700 + i);
      const frame = encodeFrame({ opcode: OP.binary, payload, mask: 0 });
      assert.ok((frame[1]! & 0x80) !== 0, 'mask bit set');
      frames.push(frame);
      expected.push({ kind: 'message', data: payload });
    });
    const wire = join(frames);
    const a = new Recorder();
    feedWhole(new FrameReader(a, true, MiB), wire);
    checkEvents(a, expected, 'one chunk');
    const b = new Recorder();
    feedReads(new FrameReader(b, true, MiB), b, wire, 62);
    checkEvents(b, expected, 'random reads');
  });

  test('each fragment is unmasked with its own key', () => {
    const parts = [bytes(5, 1), bytes(126, 2), bytes(33 * KiB, 3), bytes(3, 4)];
    const wire = join(parts.map((payload, k) => encodeFrame({
      opcode: k === 0 ? OP.binary : OP.cont, fin: k === parts.length - 1, payload, mask: keys[k]!,
    })));
    for (const feed of ['whole', 'bytes', 'reads'] as const) {
      const rec = new Recorder();
      const reader = new FrameReader(rec, true, MiB);
      if (feed === 'whole') feedWhole(reader, wire);
      else if (feed === 'bytes') feedCuts(reader, wire, Array.from({ length: wire.length - 1 }, (_, i) => i + 1));
      else feedReads(reader, rec, wire, 63);
      checkEvents(rec, [{ kind: 'message', data: Buffer.concat(parts) }], feed);
    }
  });
});

describe('FrameReader: fragmented messages', () => {
  /** Feeds in three ways and checks the events each time. */
  function everyFeed(wire: Buffer, masked: boolean, max: number, expected: readonly Expected[], label: string): void {
    const a = new Recorder();
    feedWhole(new FrameReader(a, masked, max), wire);
    checkEvents(a, expected, `${label}, one chunk`);
    if (wire.length < 4096) {
      const b = new Recorder();
      feedCuts(new FrameReader(b, masked, max), wire, Array.from({ length: wire.length - 1 }, (_, i) => i + 1));
      checkEvents(b, expected, `${label}, byte by byte`);
    } else {
      const b = new Recorder();
      feedRandomChunks(new FrameReader(b, masked, max), wire, 71);
      checkEvents(b, expected, `${label}, random chunks`);
    }
    for (const seed of [72, 73]) {
      const c = new Recorder();
      feedReads(new FrameReader(c, masked, max), c, wire, seed);
      checkEvents(c, expected, `${label}, reads ${seed}`);
      checkKept(c, expected, `${label}, reads ${seed}`);
    }
  }

  for (const masked of [false, true]) {
    const m = (r: () => number) => (masked ? keyOf(r) : null);

    test(`binary first frame and continuations are joined into one message (masked=${masked})`, () => {
      const r = rng(80);
      const parts = [bytes(10, 1), bytes(0, 2), bytes(200, 3), bytes(1, 4)];
      const wire = join(parts.map((payload, k) => encodeFrame({ opcode: k === 0 ? OP.binary : OP.cont, fin: k === parts.length - 1, payload, mask: m(r) })));
      everyFeed(wire, masked, MiB, [{ kind: 'message', data: Buffer.concat(parts), binary: true }], 'small fragments');
    });

    test(`large fragments (own buffers) joined, then a message after them (masked=${masked})`, () => {
      const r = rng(81);
      const parts = [bytes(100 * KiB, 5), bytes(40 * KiB, 6), bytes(300 * KiB, 7)];
      const after = bytes(77, 8);
      const wire = join([
        ...parts.map((payload, k) => encodeFrame({ opcode: k === 0 ? OP.binary : OP.cont, fin: k === parts.length - 1, payload, mask: m(r) })),
        encodeFrame({ opcode: OP.binary, payload: after, mask: m(r) }),
      ]);
      everyFeed(wire, masked, MiB, [{ kind: 'message', data: Buffer.concat(parts) }, { kind: 'message', data: after }], 'large fragments');
    });

    test(`a fragmented text message reports binary=false (masked=${masked})`, () => {
      const r = rng(82);
      const wire = join([
        encodeFrame({ opcode: OP.text, fin: false, payload: Buffer.from('hello, '), mask: m(r) }),
        encodeFrame({ opcode: OP.cont, fin: true, payload: Buffer.from('world'), mask: m(r) }),
        encodeFrame({ opcode: OP.binary, payload: Buffer.from('bin'), mask: m(r) }),
      ]);
      everyFeed(wire, masked, MiB, [
        { kind: 'message', data: Buffer.from('hello, world'), binary: false },
        { kind: 'message', data: Buffer.from('bin'), binary: true },
      ], 'text');
    });

    test(`control frames between fragments are delivered, in order, before the message (masked=${masked})`, () => {
      const r = rng(83);
      const parts = [bytes(1000, 9), bytes(500, 10), bytes(20, 11)];
      const ping = Buffer.from('are you there');
      const pong = bytes(125, 12);
      const close = Buffer.from([0x03, 0xe8, 0x62, 0x79, 0x65]); // 1000 "bye"
      const wire = join([
        encodeFrame({ opcode: OP.binary, fin: false, payload: parts[0]!, mask: m(r) }),
        encodeFrame({ opcode: OP.ping, payload: ping, mask: m(r) }),
        encodeFrame({ opcode: OP.cont, fin: false, payload: parts[1]!, mask: m(r) }),
        encodeFrame({ opcode: OP.pong, payload: pong, mask: m(r) }),
        encodeFrame({ opcode: OP.ping, mask: m(r) }),
        encodeFrame({ opcode: OP.cont, fin: true, payload: parts[2]!, mask: m(r) }),
        encodeFrame({ opcode: OP.close, payload: close, mask: m(r) }),
      ]);
      everyFeed(wire, masked, MiB, [
        { kind: 'control', opcode: OP.ping, payload: ping },
        { kind: 'control', opcode: OP.pong, payload: pong },
        { kind: 'control', opcode: OP.ping },
        { kind: 'message', data: Buffer.concat(parts) },
        { kind: 'control', opcode: OP.close, payload: close },
      ], 'controls between fragments');
    });
  }
});

describe('FrameReader: protocol errors (one onProtocolError with the code, nothing after it)', () => {
  interface Case {
    name: string;
    /** Reader role: true = server (frames must be masked). */
    server: boolean;
    maxMessage?: number;
    /** Frames before the violation and the events they give. */
    before?: Buffer[];
    beforeEvents?: Expected[];
    bad: Buffer[];
    code: number;
  }

  const good = (server: boolean, payload: Buffer = Buffer.from('fine')) => encodeFrame({ opcode: OP.binary, payload, mask: server ? 0x5a5a5a5a : null });
  const mk = (server: boolean, spec: FrameSpec) => encodeFrame({ ...spec, mask: spec.mask === undefined ? (server ? 0x0badf00d : null) : spec.mask });

  const cases: Case[] = [];
  for (const server of [false, true]) {
    const role = server ? 'server' : 'client';
    for (const rsv of [4, 2, 1, 7]) {
      cases.push({ name: `${role}: reserved bits ${rsv.toString(2).padStart(3, '0')}`, server, bad: [mk(server, { opcode: OP.binary, rsv, payload: Buffer.from('x') })], code: WS_CLOSE.protocol });
    }
    cases.push({ name: `${role}: RSV1 on a control frame`, server, bad: [mk(server, { opcode: OP.ping, rsv: 4 })], code: WS_CLOSE.protocol });
    for (const opcode of [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]) {
      cases.push({ name: `${role}: unknown opcode ${opcode}`, server, bad: [mk(server, { opcode, payload: Buffer.from('abc') })], code: WS_CLOSE.protocol });
    }
    for (const opcode of [OP.ping, OP.pong, OP.close]) {
      cases.push({ name: `${role}: fragmented control frame (opcode ${opcode}, FIN clear)`, server, bad: [mk(server, { opcode, fin: false, payload: Buffer.from([3, 232]) })], code: WS_CLOSE.protocol });
      cases.push({ name: `${role}: control frame of 126 bytes (opcode ${opcode})`, server, bad: [mk(server, { opcode, payload: bytes(126, opcode) })], code: WS_CLOSE.protocol });
    }
    cases.push({ name: `${role}: control frame with a 64-bit length`, server, bad: [mk(server, { opcode: OP.ping, payload: bytes(70000, 1) })], code: WS_CLOSE.protocol });
    cases.push({ name: `${role}: continuation without a start`, server, bad: [mk(server, { opcode: OP.cont, payload: Buffer.from('orphan') })], code: WS_CLOSE.protocol });
    cases.push({ name: `${role}: large continuation without a start`, server, bad: [mk(server, { opcode: OP.cont, payload: bytes(50 * KiB, 2) })], code: WS_CLOSE.protocol });
    cases.push({ name: `${role}: non-final continuation without a start`, server, bad: [mk(server, { opcode: OP.cont, fin: false, payload: Buffer.from('orphan') })], code: WS_CLOSE.protocol });
    cases.push({
      name: `${role}: continuation after a finished message`, server,
      before: [mk(server, { opcode: OP.binary, fin: false, payload: Buffer.from('a') }), mk(server, { opcode: OP.cont, payload: Buffer.from('b') })],
      beforeEvents: [{ kind: 'message', data: Buffer.from('ab') }],
      bad: [mk(server, { opcode: OP.cont, payload: Buffer.from('c') })], code: WS_CLOSE.protocol,
    });
    for (const opcode of [OP.binary, OP.text]) {
      cases.push({
        name: `${role}: new data frame (opcode ${opcode}) inside a fragmented message`, server,
        bad: [mk(server, { opcode: OP.binary, fin: false, payload: Buffer.from('first') }), mk(server, { opcode, payload: Buffer.from('second') })],
        code: WS_CLOSE.protocol,
      });
    }
    cases.push({ name: `${role}: message over maxMessage in one frame`, server, maxMessage: 1000, bad: [mk(server, { opcode: OP.binary, payload: bytes(1001, 3) })], code: WS_CLOSE.tooBig });
    cases.push({ name: `${role}: large message over maxMessage in one frame (64-bit length)`, server, maxMessage: 100 * KiB, bad: [mk(server, { opcode: OP.binary, payload: bytes(100 * KiB + 1, 3) })], code: WS_CLOSE.tooBig });
    cases.push({
      name: `${role}: fragments over maxMessage together (each one under it)`, server, maxMessage: 1000,
      bad: [mk(server, { opcode: OP.binary, fin: false, payload: bytes(600, 4) }), mk(server, { opcode: OP.cont, fin: false, payload: bytes(300, 5) }), mk(server, { opcode: OP.cont, payload: bytes(101, 6) })],
      code: WS_CLOSE.tooBig,
    });
    cases.push({
      name: `${role}: large fragments over maxMessage together`, server, maxMessage: 256 * KiB,
      bad: [mk(server, { opcode: OP.binary, fin: false, payload: bytes(200 * KiB, 4) }), mk(server, { opcode: OP.cont, payload: bytes(56 * KiB + 1, 5) })],
      code: WS_CLOSE.tooBig,
    });
    cases.push({ name: `${role}: 64-bit length beyond 2^53`, server, bad: [header64(OP.binary, 1n << 60n, server), Buffer.alloc(64)], code: WS_CLOSE.tooBig });
    cases.push({ name: `${role}: 64-bit length with the top bit set`, server, bad: [header64(OP.binary, 1n << 63n, server), Buffer.alloc(64)], code: WS_CLOSE.tooBig });
  }
  cases.push({ name: 'server: unmasked data frame', server: true, bad: [encodeFrame({ opcode: OP.binary, payload: Buffer.from('plain') })], code: WS_CLOSE.protocol });
  cases.push({ name: 'server: unmasked ping', server: true, bad: [encodeFrame({ opcode: OP.ping })], code: WS_CLOSE.protocol });
  cases.push({ name: 'server: unmasked continuation of a masked start', server: true, bad: [encodeFrame({ opcode: OP.binary, fin: false, payload: Buffer.from('a'), mask: 1 }), encodeFrame({ opcode: OP.cont, payload: Buffer.from('b') })], code: WS_CLOSE.protocol });
  cases.push({ name: 'client: masked data frame', server: false, bad: [encodeFrame({ opcode: OP.binary, payload: Buffer.from('masked'), mask: 0x12345678 })], code: WS_CLOSE.protocol });
  cases.push({ name: 'client: masked data frame with a zero key', server: false, bad: [encodeFrame({ opcode: OP.binary, payload: Buffer.from('masked'), mask: 0 })], code: WS_CLOSE.protocol });
  cases.push({ name: 'client: masked close frame', server: false, bad: [encodeFrame({ opcode: OP.close, payload: Buffer.from([3, 232]), mask: 7 })], code: WS_CLOSE.protocol });

  for (const c of cases) {
    test(c.name, () => {
      const max = c.maxMessage ?? MiB;
      const lead = good(c.server, Buffer.from('before'));
      const trail = [good(c.server, Buffer.from('after')), encodeFrame({ opcode: OP.ping, mask: c.server ? 9 : null }), good(c.server, bytes(40 * KiB, 1))];
      const wire = join([lead, ...(c.before ?? []), ...c.bad, ...trail]);
      const expected: Expected[] = [{ kind: 'message', data: Buffer.from('before') }, ...(c.beforeEvents ?? []), { kind: 'error', code: c.code }];
      const more = good(c.server, Buffer.from('even later'));

      const feeds: Array<[string, (reader: FrameReader, rec: Recorder) => void]> = [
        ['one chunk', (reader) => feedWhole(reader, wire)],
        ['random chunks', (reader) => feedRandomChunks(reader, wire, 91)],
        ['random reads', (reader, rec) => feedReads(reader, rec, wire, 92)],
        ['one-byte reads', (reader, rec) => feedReads(reader, rec, wire, 93, () => 1)],
      ];
      if (wire.length < 2000) feeds.push(['byte by byte', (reader) => feedCuts(reader, wire, Array.from({ length: wire.length - 1 }, (_, i) => i + 1))]);
      for (const [label, feed] of feeds) {
        const rec = new Recorder();
        const reader = new FrameReader(rec, c.server, max);
        feed(reader, rec);
        checkEvents(rec, expected, label);
        // Nothing is parsed after the violation, whichever way bytes keep coming.
        reader.push(Buffer.from(more));
        const dst = reader.nextBuffer();
        const n = Math.min(dst.length, more.length);
        more.copy(dst, 0, 0, n);
        reader.filled(n);
        checkEvents(rec, expected, `${label}, then more bytes`);
      }
    });
  }

  test('a message of exactly maxMessage bytes passes, in one frame and in fragments', () => {
    for (const server of [false, true]) {
      const max = 1000;
      const one = bytes(1000, 1);
      const parts = [bytes(600, 2), bytes(0, 3), bytes(400, 4)];
      const wire = join([
        mk(server, { opcode: OP.binary, payload: one }),
        ...parts.map((payload, k) => mk(server, { opcode: k === 0 ? OP.binary : OP.cont, fin: k === 2, payload })),
        // The limit counts per message: the next one starts from zero.
        mk(server, { opcode: OP.binary, fin: false, payload: bytes(999, 5) }),
        mk(server, { opcode: OP.cont, payload: bytes(1, 6) }),
      ]);
      const expected: Expected[] = [{ kind: 'message', data: one }, { kind: 'message', data: Buffer.concat(parts) }, { kind: 'message', data: Buffer.concat([bytes(999, 5), bytes(1, 6)]) }];
      const a = new Recorder();
      feedWhole(new FrameReader(a, server, max), wire);
      checkEvents(a, expected, `one chunk, server=${server}`);
      const b = new Recorder();
      feedReads(new FrameReader(b, server, max), b, wire, 94);
      checkEvents(b, expected, `reads, server=${server}`);
    }
  });

  test('control frames are not counted against maxMessage, and 125-byte control frames pass', () => {
    const max = 10;
    const ping = bytes(125, 1);
    const wire = join([
      encodeFrame({ opcode: OP.binary, fin: false, payload: bytes(10, 2) }),
      encodeFrame({ opcode: OP.ping, payload: ping }),
      encodeFrame({ opcode: OP.cont, payload: Buffer.alloc(0) }),
    ]);
    const rec = new Recorder();
    feedWhole(new FrameReader(rec, false, max), wire);
    checkEvents(rec, [{ kind: 'control', opcode: OP.ping, payload: ping }, { kind: 'message', data: bytes(10, 2) }], 'controls and max');
  });
});

// --- WsConn and start() --------------------------------------------------------------------------

/** The parts of a net.Socket that WsConn uses; records what is written. */
class FakeSocket extends EventEmitter {
  readonly written: Buffer[] = [];
  destroyed = false;
  writable = true;
  setNoDelay(): this {
    return this;
  }
  write(b: Buffer | string): boolean {
    this.written.push(Buffer.from(b));
    return true;
  }
  cork(): void {}
  uncork(): void {}
  end(): this {
    this.writable = false;
    return this;
  }
  destroy(): this {
    if (!this.destroyed) {
      this.destroyed = true;
      this.writable = false;
      this.emit('close', false);
    }
    return this;
  }
  /** Frames written so far, as [opcode, payload] (unmasking client frames). */
  frames(): Array<[number, Buffer]> {
    return readFrames(Buffer.concat(this.written)).frames.map((f) => [f.opcode, f.payload]);
  }
}

/** A WsConn over a fake socket, recording what reaches its handlers (handlers set, not started). */
function fakeConn(role: 'client' | 'server', head?: Buffer) {
  const socket = new FakeSocket();
  const conn = new WsConn(socket as unknown as Socket, role, { maxMessage: MiB, closeTimeoutMs: 60_000 }, head);
  const log: string[] = [];
  conn.onmessage = (data, binary) => log.push(`message ${binary ? 'bin' : 'text'} ${data.toString()}`);
  conn.onclose = (code, reason) => log.push(`close ${code} ${reason}`);
  conn.onpong = () => log.push('pong');
  return { socket, conn, log };
}

/** Bytes into a client WsConn as its onread would put them: nextBuffer(), copy, filled(). */
function readInto(conn: WsConn, wire: Buffer): void {
  let off = 0;
  while (off < wire.length) {
    const dst = conn.reader.nextBuffer();
    const n = wire.copy(dst, 0, off, Math.min(wire.length, off + dst.length));
    conn.reader.filled(n);
    off += n;
  }
}

describe('WsConn: nothing reaches the handlers before start()', () => {
  const masked = (opcode: number, payload: Buffer | string) => encodeFrame({ opcode, payload: Buffer.from(payload), mask: 0x0a0b0c0d });
  const plain = (opcode: number, payload: Buffer | string) => encodeFrame({ opcode, payload: Buffer.from(payload) });

  test('server: frames in `head` wait for start(); pings are answered meanwhile; start() delivers them once, in order', () => {
    const head = join([masked(OP.binary, 'one'), masked(OP.ping, 'p1'), masked(OP.text, 'two')]);
    const { socket, conn, log } = fakeConn('server', head);
    assert.deepEqual(log, [], 'nothing delivered by the constructor');
    // The ping among them was answered (control frames do not wait).
    assert.deepEqual(socket.frames().map(([op, p]) => `${op} ${p.toString()}`), [`${OP.pong} p1`]);
    // More messages before start() queue behind them.
    socket.emit('data', join([masked(OP.binary, 'three'), masked(OP.pong, '')]));
    assert.deepEqual(log, ['pong'], 'a pong is not a message: it is not held');
    conn.start();
    assert.deepEqual(log, ['pong', 'message bin one', 'message text two', 'message bin three'], 'start() delivers synchronously, in order');
    conn.start();
    assert.equal(log.length, 4, 'a second start() delivers nothing again');
    socket.emit('data', masked(OP.binary, 'four'));
    assert.deepEqual(log.slice(4), ['message bin four'], 'after start(), messages go straight through');
  });

  test('client: frames read before start() (the same read as the 101) wait for it', () => {
    const { conn, log } = fakeConn('client', join([plain(OP.binary, 'hello')]));
    readInto(conn, join([plain(OP.binary, 'x'.repeat(200)), plain(OP.binary, bytes(40 * KiB, 1))]));
    assert.deepEqual(log, []);
    conn.start();
    assert.equal(log.length, 3);
    assert.equal(log[0], 'message bin hello');
    assert.equal(log[1], `message bin ${'x'.repeat(200)}`);
    assert.match(String(log[2]), /^message bin /);
    readInto(conn, plain(OP.binary, 'later'));
    assert.equal(log[3], 'message bin later');
  });

  test('no handler is called at all before start(), even for a message already parsed: a late handler still gets it', () => {
    const socket = new FakeSocket();
    const conn = new WsConn(socket as unknown as Socket, 'server', { maxMessage: MiB }, masked(OP.binary, 'early'));
    socket.emit('data', masked(OP.binary, 'early too'));
    // Handlers set only now, long after both were parsed.
    const got: string[] = [];
    conn.onmessage = (data) => got.push(data.toString());
    assert.deepEqual(got, []);
    conn.start();
    assert.deepEqual(got, ['early', 'early too']);
  });

  test('a socket that closes before start(): onclose (1006) only at start()', () => {
    const { socket, conn, log } = fakeConn('server');
    socket.destroy();
    assert.deepEqual(log, []);
    conn.start();
    assert.deepEqual(log, [`close ${WS_CLOSE.abnormal} `]);
    conn.start();
    assert.equal(log.length, 1);
  });

  test('a close frame and the socket close before start(): onclose with the peer\'s code and reason only at start()', () => {
    const payload = Buffer.concat([Buffer.from([0x0f, 0xa2]), Buffer.from('gone')]); // 4002
    const { socket, conn, log } = fakeConn('server', masked(OP.close, payload));
    // The close was answered with the same code.
    const sent = socket.frames();
    assert.equal(sent.length, 1);
    assert.equal(sent[0]![0], OP.close);
    assert.equal(sent[0]![1].readUInt16BE(0), 4002);
    socket.destroy();
    assert.deepEqual(log, []);
    conn.start();
    assert.deepEqual(log, ['close 4002 gone']);
  });

  // Messages that came before start() are delivered even when a close came after them (they
  // were dropped once the connection was no longer open at start()).
  const closeWith = (code: number, reason = '') => {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(code, 0);
    return Buffer.concat([b, Buffer.from(reason)]);
  };

  test('a message, a close frame and the socket close, all before start(): start() delivers the message, then onclose', () => {
    const { socket, conn, log } = fakeConn('server', join([masked(OP.binary, 'last words'), masked(OP.close, closeWith(4002, 'gone'))]));
    socket.destroy();
    assert.deepEqual(log, []);
    conn.start();
    assert.deepEqual(log, ['message bin last words', 'close 4002 gone']);
  });

  test('a message and a close frame before start(), the socket still open: start() delivers the message; onclose when the socket closes', () => {
    const { socket, conn, log } = fakeConn('server', join([masked(OP.binary, 'last words'), masked(OP.close, closeWith(4002))]));
    assert.equal(socket.destroyed, false);
    conn.start();
    assert.deepEqual(log, ['message bin last words']);
    socket.destroy();
    assert.deepEqual(log, ['message bin last words', 'close 4002 ']);
  });

  test('a message and a protocol error (an unmasked frame to a server) before start(): start() delivers the message, then onclose 1002', () => {
    const { socket, conn, log } = fakeConn('server', join([masked(OP.binary, 'fine'), plain(OP.binary, 'x')]));
    // The error was answered with a 1002 close.
    const sent = socket.frames();
    assert.equal(sent.length, 1);
    assert.equal(sent[0]![0], OP.close);
    assert.equal(sent[0]![1].readUInt16BE(0), WS_CLOSE.protocol);
    socket.destroy();
    assert.deepEqual(log, []);
    conn.start();
    assert.equal(log.length, 2, JSON.stringify(log));
    assert.equal(log[0], 'message bin fine');
    assert.match(log[1]!, /^close 1002 /);
  });
});

describe('WsConn: send([]) and incoming close frames', () => {
  const masked = (payload: Buffer) => encodeFrame({ opcode: OP.close, payload, mask: 0x01020304 });

  test('send([]) writes one empty binary frame (unmasked by a server, masked by a client)', () => {
    const server = fakeConn('server');
    server.conn.start();
    server.conn.send([]);
    assert.deepEqual(Buffer.concat(server.socket.written), Buffer.from([0x82, 0x00]));
    const client = fakeConn('client');
    client.conn.start();
    client.conn.send([]);
    // A client frame carries a masking key (random: RFC 6455 5.3), even with nothing to mask.
    const sent = Buffer.concat(client.socket.written);
    assert.equal(sent.length, 6);
    assert.deepEqual(sent.subarray(0, 2), Buffer.from([0x82, 0x80]));
  });

  const code = (n: number, reason: Buffer = Buffer.alloc(0)) => {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(n, 0);
    return Buffer.concat([b, reason]);
  };

  for (const bad of [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535]) {
    test(`a close frame with code ${bad} is a protocol error: 1002 sent and reported`, () => {
      const { socket, conn, log } = fakeConn('server', masked(code(bad, Buffer.from('why'))));
      conn.start();
      const sent = socket.frames();
      assert.equal(sent.length, 1);
      assert.equal(sent[0]![0], OP.close);
      assert.equal(sent[0]![1].readUInt16BE(0), WS_CLOSE.protocol);
      socket.destroy();
      assert.equal(log.length, 1);
      assert.match(log[0]!, /^close 1002 /);
    });
  }

  for (const good of [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999]) {
    test(`a close frame with code ${good} is accepted and echoed`, () => {
      const { socket, conn, log } = fakeConn('server', masked(code(good, Buffer.from('ok ✓'))));
      conn.start();
      const sent = socket.frames();
      assert.equal(sent.length, 1);
      assert.equal(sent[0]![1].readUInt16BE(0), good);
      socket.destroy();
      assert.deepEqual(log, [`close ${good} ok ✓`]);
    });
  }

  for (const [what, reason] of [
    ['0xff 0xfe', Buffer.from([0xff, 0xfe])],
    ['a truncated 3-byte sequence', Buffer.from([0x61, 0xe2, 0x82])],
    ['an encoded surrogate', Buffer.from([0xed, 0xa0, 0x80])],
    ['an overlong encoding', Buffer.from([0xc0, 0xaf])],
  ] as const) {
    test(`a close reason that is not UTF-8 (${what}) is a protocol error: 1002`, () => {
      const { socket, conn, log } = fakeConn('server', masked(code(4000, reason)));
      conn.start();
      const sent = socket.frames();
      assert.equal(sent.length, 1);
      assert.equal(sent[0]![1].readUInt16BE(0), WS_CLOSE.protocol);
      socket.destroy();
      assert.equal(log.length, 1);
      assert.match(log[0]!, /^close 1002 /);
    });
  }

  test('a close frame of 1 byte is a protocol error; an empty one reports 1005 and is answered with an empty close', () => {
    const one = fakeConn('server', masked(Buffer.from([0x03])));
    one.conn.start();
    assert.equal(one.socket.frames()[0]![1].readUInt16BE(0), WS_CLOSE.protocol);
    one.socket.destroy();
    assert.match(one.log[0]!, /^close 1002 /);

    const empty = fakeConn('server', masked(Buffer.alloc(0)));
    empty.conn.start();
    const sent = empty.socket.frames();
    assert.equal(sent.length, 1);
    assert.equal(sent[0]![0], OP.close);
    assert.equal(sent[0]![1].length, 0);
    empty.socket.destroy();
    assert.deepEqual(empty.log, [`close ${WS_CLOSE.noStatus} `]);
  });
});
