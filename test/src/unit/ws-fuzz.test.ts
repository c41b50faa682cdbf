// Differential fuzz of our FrameReader against the `ws` package's Receiver: the same random and
// mutated frame streams (seeded), for both roles (a server reads masked frames, a client
// unmasked ones), with the same maximum message size and fragment cap, each reader fed at its
// own random chunk boundaries. Both must take the same decision per stream (accept, or refuse
// with the same close code, after the same events) and deliver the same messages and control
// frames before it.
//
// Where our reader legitimately differs, the test normalises, explicitly:
// - our FrameReader hands close frames and text messages over as they are: WsConn checks close
//   codes and reasons, and the protocol is binary-only (WsConn's owner refuses text). ws checks
//   both in its Receiver. So a close or text event of ours goes through the same checks here
//   (RFC 6455 7.4 close codes, 1 byte payload, UTF-8) before it is compared;
// - after a close frame ws ignores everything; our reader goes on parsing, and WsConn stops
//   delivering. Events of ours after the first close are dropped;
// - too many fragments: ws closes with 1008 (policy), we with 1009 (too big); mapped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { FrameReader, MAX_FRAGMENTS, type FrameSink } from '@wsblk/shared';
import { between, bytes, rng } from '../support/random.js';
import { encodeFrame } from '../support/ws-wire.js';

const require = createRequire(import.meta.url);
// ws's Receiver (ws/lib/receiver.js, exported as WebSocket.Receiver) parses frames as ws does.
const Receiver = (require('ws') as { Receiver: new (opts: object) => WsReceiver }).Receiver;

/** The close code a Receiver error carries (under ws's private symbol 'status-code'). */
function statusCodeOf(err: Error): number {
  const key = Object.getOwnPropertySymbols(err).find((s) => s.description === 'status-code');
  return key ? (err as Error & Record<symbol, number>)[key]! : -1;
}

interface WsReceiver {
  on(event: string, fn: (...args: unknown[]) => void): void;
  _write(chunk: Buffer, encoding: string, cb: (err?: Error | null) => void): void;
}

const OP = { cont: 0, text: 1, binary: 2, close: 8, ping: 9, pong: 10 } as const;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** What a reader made of a stream: its events in order, then its decision. */
interface Outcome {
  events: string[];
  /** The close code it refused the stream with, or 0 (accepted so far). */
  refused: number;
}

const hex = (b: Buffer) => (b.length > 48 ? `${b.subarray(0, 24).toString('hex')}..(${b.length})` : b.toString('hex'));

function isUtf8(b: Buffer): boolean {
  try {
    utf8.decode(b);
    return true;
  } catch {
    return false;
  }
}

/** RFC 6455 7.4: the close codes a peer may send. */
const validCloseCode = (code: number) => (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);

/** Splits a stream at random points (mostly small pieces, sometimes the rest in one). */
function chunks(wire: Buffer, r: () => number): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at < wire.length) {
    const p = r();
    const n = p < 0.4 ? between(r, 1, 8) : p < 0.8 ? between(r, 9, 300) : p < 0.95 ? between(r, 301, 70_000) : wire.length - at;
    out.push(Buffer.from(wire.subarray(at, at + n)));
    at += n;
  }
  return out;
}

/** ws's Receiver over the stream, chunk by chunk, stopping at its first error. */
function runWs(wire: Buffer, server: boolean, max: number, r: () => number): Outcome {
  const rx = new Receiver({ isServer: server, maxPayload: max, maxFragments: MAX_FRAGMENTS, allowSynchronousEvents: true, binaryType: 'nodebuffer' });
  const out: Outcome = { events: [], refused: 0 };
  rx.on('message', (data, binary) => out.events.push(`message ${binary ? 'bin' : 'text'} ${hex(data as Buffer)}`));
  rx.on('ping', (data) => out.events.push(`ping ${hex(data as Buffer)}`));
  rx.on('pong', (data) => out.events.push(`pong ${hex(data as Buffer)}`));
  rx.on('conclude', (code, reason) => out.events.push(`close ${code as number} ${hex(reason as Buffer)}`));
  rx.on('error', () => {}); // errors are taken from the write callback below
  for (const chunk of chunks(wire, r)) {
    rx._write(chunk, 'buffer', (err) => {
      if (err && !out.refused) out.refused = statusCodeOf(err);
    });
    if (out.refused) break;
  }
  return out;
}

/** Our FrameReader over the stream (push() or reads), normalised as the header says. */
function runOurs(wire: Buffer, server: boolean, max: number, r: () => number, feed: 'push' | 'reads'): Outcome {
  const out: Outcome = { events: [], refused: 0 };
  let done = false;
  const refuse = (code: number) => {
    if (!done) out.refused = code;
    done = true;
  };
  const sink: FrameSink = {
    onMessage(data, binary) {
      if (done) return;
      if (!binary && !isUtf8(data)) return refuse(1007);
      out.events.push(`message ${binary ? 'bin' : 'text'} ${hex(data)}`);
    },
    onControl(opcode, payload) {
      if (done) return;
      if (opcode === OP.ping || opcode === OP.pong) return void out.events.push(`${opcode === OP.ping ? 'ping' : 'pong'} ${hex(payload)}`);
      if (payload.length === 1) return refuse(1002);
      const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      if (payload.length >= 2 && !validCloseCode(code)) return refuse(1002);
      const reason = payload.subarray(2);
      if (!isUtf8(reason)) return refuse(1007);
      out.events.push(`close ${code} ${hex(reason)}`);
      done = true;
    },
    onProtocolError(code, reason) {
      refuse(/fragments/.test(reason) ? 1008 : code);
    },
  };
  const reader = new FrameReader(sink, server, max);
  if (feed === 'push') {
    for (const chunk of chunks(wire, r)) reader.push(chunk);
  } else {
    let off = 0;
    while (off < wire.length && !done) {
      const dst = reader.nextBuffer();
      const n = Math.min(dst.length, wire.length - off, r() < 0.5 ? between(r, 1, 64) : between(r, 65, 200_000));
      wire.copy(dst, 0, off, off + n);
      off += n;
      reader.filled(n);
    }
  }
  return out;
}

/** A random valid stream: data messages (some fragmented, some text), pings, pongs, a close. */
function validStream(r: () => number, server: boolean, max: number): Buffer[] {
  const mask = () => (server ? (r() < 0.1 ? 0 : Math.floor(r() * 0x1_0000_0000)) : null);
  const size = () => {
    const p = r();
    return p < 0.6 ? between(r, 0, 130) : p < 0.9 ? between(r, 126, 3000) : between(r, 60_000, Math.min(max, 140_000));
  };
  const text = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i % 7 === 3 ? 'é' : i % 11 === 5 ? '✓' : 'a')).join('')).subarray(0, n);
  const frames: Buffer[] = [];
  const count = between(r, 1, 12);
  for (let i = 0; i < count; i++) {
    const p = r();
    if (p < 0.15) {
      frames.push(encodeFrame({ opcode: r() < 0.5 ? OP.ping : OP.pong, payload: bytes(between(r, 0, 125), i), mask: mask() }));
    } else if (p < 0.3) {
      const pieces = between(r, 2, 5);
      for (let k = 0; k < pieces; k++) {
        frames.push(encodeFrame({ opcode: k === 0 ? OP.binary : OP.cont, fin: k === pieces - 1, payload: bytes(size() >> 2, i * 10 + k), mask: mask() }));
        if (r() < 0.3) frames.push(encodeFrame({ opcode: OP.ping, payload: bytes(between(r, 0, 20), k), mask: mask() }));
      }
    } else if (p < 0.4) {
      frames.push(encodeFrame({ opcode: OP.text, payload: text(between(r, 0, 200)), mask: mask() }));
    } else {
      frames.push(encodeFrame({ opcode: OP.binary, payload: bytes(size(), i), mask: mask() }));
    }
  }
  if (r() < 0.3) {
    const reason = Buffer.from(r() < 0.5 ? 'bye' : '');
    const code = Buffer.alloc(2);
    code.writeUInt16BE([1000, 1001, 4000, 3000, 1005, 999, 1004, 5000][between(r, 0, 7)]!, 0);
    frames.push(encodeFrame({ opcode: OP.close, payload: r() < 0.15 ? Buffer.alloc(0) : Buffer.concat([code, reason]), mask: mask() }));
  }
  return frames;
}

/** One mutation of a stream of frames, of the kinds a broken or hostile peer sends. */
function mutate(frames: Buffer[], r: () => number, server: boolean): Buffer {
  const at = between(r, 0, frames.length - 1);
  const f = Buffer.from(frames[at]!);
  const kind = between(r, 0, 11);
  switch (kind) {
    case 0: f[0]! ^= 1 << between(r, 0, 7); break; // FIN, RSV or opcode bit
    case 1: f[1]! ^= 0x80; break; // mask bit
    case 2: f[1] = (f[1]! & 0x80) | between(r, 0, 127); break; // length field
    case 3: f[between(r, 0, f.length - 1)]! ^= 1 << between(r, 0, 7); break; // any bit
    case 4: frames.splice(at, 0, encodeFrame({ opcode: OP.cont, fin: r() < 0.5, payload: bytes(between(r, 0, 10), 1), mask: server ? 7 : null })); return Buffer.concat(frames);
    case 5: frames.splice(at, 0, encodeFrame({ opcode: OP.binary, fin: false, payload: bytes(between(r, 0, 10), 2), mask: server ? 7 : null })); return Buffer.concat(frames);
    case 6: frames.splice(at, 0, bytes(between(r, 1, 20), at)); return Buffer.concat(frames); // garbage
    case 7: return Buffer.concat(frames).subarray(0, between(r, 0, Buffer.concat(frames).length)); // truncated
    case 8: { // a 64-bit length, sometimes huge
      const h = Buffer.alloc(10 + (server ? 4 : 0));
      h[0] = 0x82;
      h[1] = (server ? 0x80 : 0) | 127;
      h.writeBigUInt64BE([2n ** 53n, 2n ** 53n - 1n, 2n ** 63n, 70_000n, 200_000n, 0n][between(r, 0, 5)]!, 2);
      frames.splice(at, 0, h, bytes(between(r, 0, 300), 3));
      return Buffer.concat(frames);
    }
    case 9: { // a control frame too long or fragmented
      frames.splice(at, 0, encodeFrame({ opcode: [OP.ping, OP.pong, OP.close][between(r, 0, 2)]!, fin: r() < 0.5, payload: bytes(between(r, 120, 130), 4), mask: server ? 9 : null }));
      return Buffer.concat(frames);
    }
    case 10: { // a flood of empty continuations inside a message
      const flood = [encodeFrame({ opcode: OP.binary, fin: false, mask: server ? 5 : null })];
      const n = between(r, MAX_FRAGMENTS - 3, MAX_FRAGMENTS + 3);
      for (let i = 1; i < n; i++) flood.push(encodeFrame({ opcode: OP.cont, fin: i === n - 1, mask: server ? 5 : null }));
      frames.splice(at, 0, ...flood);
      return Buffer.concat(frames);
    }
    default: { // text that is not UTF-8, or a close reason that is not
      const bad = Buffer.from([0x61, 0xc0, 0xaf, 0xed, 0xa0, 0x80].slice(0, between(r, 2, 6)));
      frames.splice(at, 0, r() < 0.5 ? encodeFrame({ opcode: OP.text, payload: bad, mask: server ? 3 : null }) : encodeFrame({ opcode: OP.close, payload: Buffer.concat([Buffer.from([0x03, 0xe8]), bad]), mask: server ? 3 : null }));
      return Buffer.concat(frames);
    }
  }
  frames[at] = f;
  return Buffer.concat(frames);
}

for (const server of [true, false]) {
  test(`FrameReader and ws's Receiver agree on random and mutated streams (${server ? 'server: masked' : 'client: unmasked'} frames)`, () => {
    const counts = { streams: 0, refused: 0, messages: 0 };
    const deadline = Date.now() + 4000;
    for (let seed = 1; seed <= 1500 && Date.now() < deadline; seed++) {
      const r = rng(seed * 2 + (server ? 1 : 0));
      const max = r() < 0.3 ? between(r, 100, 5000) : 128 * 1024;
      const frames = validStream(r, server, max);
      const mutations = r() < 0.2 ? 0 : between(r, 1, 3);
      let wire: Buffer = Buffer.concat(frames);
      for (let m = 0; m < mutations; m++) {
        const parts = [wire];
        wire = mutate(m === 0 ? frames.slice() : parts, r, server);
      }
      const theirs = runWs(Buffer.from(wire), server, max, rng(seed + 1e6));
      for (const feed of ['push', 'reads'] as const) {
        const ours = runOurs(Buffer.from(wire), server, max, rng(seed + 2e6), feed);
        const label = `seed ${seed}, ${feed}, max ${max}, ${wire.length} bytes: ${hex(wire)}`;
        assert.equal(ours.refused, theirs.refused, `${label}: refused with ${ours.refused} vs ws ${theirs.refused}\nours ${ours.events.join(' | ')}\nws   ${theirs.events.join(' | ')}`);
        assert.deepEqual(ours.events, theirs.events, `${label}: events`);
      }
      counts.streams++;
      if (theirs.refused) counts.refused++;
      counts.messages += theirs.events.length;
    }
    // The streams covered both decisions, many times.
    assert.ok(counts.streams >= 300, JSON.stringify(counts));
    assert.ok(counts.refused > counts.streams / 10 && counts.refused < counts.streams * 0.9, JSON.stringify(counts));
  });
}
