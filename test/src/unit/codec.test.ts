import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  Errno, FLAG_FUA, FLAG_NO_UNMAP, Kind, LIMITS, Op, PAYLOAD_LZ4, PROTOCOL_VERSION, ProtocolError,
  decodeMessage, encodeHello, encodeSetRecord, parseSetRecord, encodeReplies, encodeRequests, encodeWelcome, joinParts, maybeCompress,
  type BlockReply, type BlockRequest, type Hello, type Welcome,
} from '@wsblk/shared';
import { Packr } from 'msgpackr';
import { U64, frame, msgpack } from '../support/raw-client.js';
import { rng } from '../support/random.js';
import { compressible, pattern } from '../support/server.js';

const welcome: Welcome = {
  version: PROTOCOL_VERSION, exportName: 'disk0', size: 64 << 20, blockSize: 4096, readOnly: false,
  flush: true, fua: true, discard: true, writeZeroes: false, maxPayload: 1 << 20,
  sessionId: 'a'.repeat(32), epoch: 3, resumed: true, nextSeq: 42, features: ['lz4'],
};

/** Header length from the prefix, and the bytes after the header. */
function split(buf: Buffer): { header: Buffer; body: Buffer } {
  const h = buf.readUInt32LE(4);
  return { header: buf.subarray(8, 8 + h), body: buf.subarray(8 + h) };
}

function requests(buf: Buffer, limits?: { maxPayload: number }): BlockRequest[] {
  const m = decodeMessage(buf, limits);
  assert.equal(m.kind, 'requests');
  return m.requests;
}

function replies(buf: Buffer): BlockReply[] {
  const m = decodeMessage(buf);
  assert.equal(m.kind, 'replies');
  return m.replies;
}

/** A request record with defaults: [seq, op, flags, offset, length, payloadFlags, wireLength]. */
function rec(over: Partial<{ seq: unknown; op: unknown; flags: unknown; offset: unknown; length: unknown; pflags: unknown; wire: unknown }> = {}): unknown[] {
  const r = { seq: 1, op: Op.Read, flags: 0, offset: 0, length: 4096, pflags: 0, wire: 0, ...over };
  return [r.seq, r.op, r.flags, r.offset, r.length, r.pflags, r.wire];
}

const reqFrame = (records: unknown, ...payloads: Buffer[]) => frame(Kind.Requests, msgpack(records), ...payloads);
const repFrame = (records: unknown, ...payloads: Buffer[]) => frame(Kind.Replies, msgpack(records), ...payloads);

/** Asserts decodeMessage throws a ProtocolError whose message matches. */
function rejects(buf: Buffer, message: RegExp, limits?: { maxPayload: number }): void {
  assert.throws(() => decodeMessage(buf, limits), (e: unknown) => {
    assert.ok(e instanceof ProtocolError, `expected a ProtocolError, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
    assert.match(e.message, message);
    return true;
  });
}

describe('codec round trips', () => {
  test('a hello decodes to what was encoded, with and without a session to resume', () => {
    const first: Hello = { version: PROTOCOL_VERSION, clientId: 'host:1', features: ['lz4'], maxPayload: 4 << 20 };
    assert.deepEqual(decodeMessage(encodeHello(first)), { kind: 'hello', hello: first });
    const again: Hello = { ...first, resume: 'f'.repeat(32), features: [] };
    assert.deepEqual(decodeMessage(encodeHello(again)), { kind: 'hello', hello: again });
    const reclaim: Hello = { ...again, secret: 'a'.repeat(64), reclaim: true };
    assert.deepEqual(decodeMessage(encodeHello(reclaim)), { kind: 'hello', hello: reclaim });
  });

  test('a welcome decodes to what was encoded', () => {
    assert.deepEqual(decodeMessage(encodeWelcome(welcome)), { kind: 'welcome', welcome });
  });

  test('every message starts with the kind, three zero bytes and the header length', () => {
    const buf = encodeWelcome(welcome);
    assert.equal(buf[0], Kind.Welcome);
    assert.deepEqual([buf[1], buf[2], buf[3]], [0, 0, 0]);
    assert.equal(buf.readUInt32LE(4), buf.length - 8);
  });

  test('a request batch of every op decodes to what was encoded, without lz4', () => {
    const data = pattern(8192, 1);
    const batch: BlockRequest[] = [
      { seq: 1, op: Op.Read, flags: 0, offset: 0, length: 4096 },
      { seq: 2, op: Op.Write, flags: FLAG_FUA, offset: 4096, length: data.length, payload: data },
      { seq: 3, op: Op.Flush, flags: 0, offset: 0, length: 0 },
      { seq: 4, op: Op.Discard, flags: 0, offset: 1 << 20, length: 1 << 30 },
      { seq: 5, op: Op.WriteZeroes, flags: FLAG_NO_UNMAP | FLAG_FUA, offset: 2 ** 40, length: 512 },
      { seq: 2 ** 40, op: Op.Write, flags: 0, offset: 0, length: 3, payload: Buffer.from('abc') },
    ];
    const parts = encodeRequests(batch, false);
    assert.equal(parts.length, 3, 'header, then each payload as its own part');
    assert.equal(parts[1], data, 'a payload is passed on without a copy');
    assert.deepEqual(requests(joinParts(parts)), batch);
  });

  test('a compressible WRITE payload travels lz4-compressed and decodes to the original', () => {
    const data = compressible(64 << 10, 7);
    const batch: BlockRequest[] = [{ seq: 9, op: Op.Write, flags: 0, offset: 0, length: data.length, payload: data }];
    const plain = joinParts(encodeRequests(batch, false));
    const packed = joinParts(encodeRequests(batch, true));
    assert.ok(plain.length > data.length, 'without lz4 the payload is on the wire as it is');
    assert.ok(packed.length < data.length / 4, `with lz4 the message is ${packed.length} bytes for ${data.length} of data`);
    assert.deepEqual(requests(packed), batch);
  });

  test('a payload lz4 does not shrink by 12.5 % travels uncompressed, byte for byte', () => {
    const data = pattern(16 << 10, 3);
    const msg = joinParts(encodeRequests([{ seq: 1, op: Op.Write, flags: 0, offset: 0, length: data.length, payload: data }], true));
    const { body } = split(msg);
    assert.equal(body.length, data.length);
    assert.ok(body.equals(data));
    assert.ok(requests(msg)[0]!.payload!.equals(data));
  });

  test('maybeCompress keeps lz4 only when it saves at least 1/8 of the payload', () => {
    // 4096 bytes: `n` of noise then zeroes. lz4 costs about n bytes, so n decides.
    const mixed = (n: number) => Buffer.concat([pattern(n, 5), Buffer.alloc(4096 - n)]);
    const saves = maybeCompress(mixed(3000));
    assert.ok(saves, '3000 bytes of noise in 4096 compress to well under 7/8');
    assert.ok(saves.length <= 4096 - 512);
    assert.equal(maybeCompress(mixed(3700)), null, '3700 bytes of noise in 4096 cannot save 512 bytes');
    assert.equal(maybeCompress(pattern(4096, 6)), null, 'noise does not compress');
    assert.equal(maybeCompress(Buffer.alloc(511)), null, 'payloads under 512 bytes are never compressed');
    assert.ok(maybeCompress(Buffer.alloc(512)), '512 zero bytes compress');
  });

  test('a reply batch with data and error statuses decodes to what was encoded, with and without lz4', () => {
    const batch: BlockReply[] = [
      { seq: 1, status: 0, data: compressible(32 << 10, 1) },
      { seq: 2, status: Errno.EIO },
      { seq: 3, status: 0 },
      { seq: 4, status: 0, data: pattern(4096, 2) },
      { seq: 5, status: Errno.ENOSPC },
    ];
    for (const lz4 of [false, true]) {
      const msg = joinParts(encodeReplies(batch, lz4));
      assert.deepEqual(replies(msg), batch, `lz4=${lz4}`);
      const { body } = split(msg);
      if (lz4) assert.ok(body.length < 4096 + 8192, 'the compressible reply shrank');
      else assert.equal(body.length, (32 << 10) + 4096);
    }
  });

  test('a batch of the most records allowed decodes', () => {
    const batch: BlockRequest[] = Array.from({ length: LIMITS.maxRecords }, (_, i) => ({ seq: i, op: Op.Flush, flags: 0, offset: 0, length: 0 }));
    assert.equal(requests(joinParts(encodeRequests(batch, false))).length, LIMITS.maxRecords);
  });
});

describe('the decoder refuses malformed messages with a ProtocolError', () => {
  test('a message shorter than the 8-byte prefix', () => {
    rejects(Buffer.alloc(7), /shorter than the 8-byte prefix/);
    rejects(Buffer.alloc(0), /shorter than the 8-byte prefix/);
  });

  test('a prefix whose reserved bytes are not zero', () => {
    const good = reqFrame([rec()]);
    for (const i of [1, 2, 3]) {
      const bad = Buffer.from(good);
      bad[i] = 1;
      rejects(bad, /reserved prefix bytes are not zero/);
    }
  });

  test('a header length that runs past the end of the message', () => {
    const bad = reqFrame([rec()]);
    bad.writeUInt32LE(bad.length - 7, 4);
    rejects(bad, /runs past the end/);
    bad.writeUInt32LE(0xffffffff, 4);
    rejects(bad, /runs past the end/);
  });

  test('an empty header', () => {
    rejects(frame(Kind.Requests, Buffer.alloc(0)), /empty header/);
  });

  test('an unknown message kind', () => {
    rejects(frame(9, msgpack([rec()])), /unknown message kind 9/);
    rejects(frame(0, msgpack([rec()])), /unknown message kind 0/);
  });

  test('a header that is not msgpack', () => {
    rejects(frame(Kind.Requests, Buffer.from([0xdc, 0x00, 0x05, 0x01])), /not valid msgpack/);
    rejects(frame(Kind.Requests, Buffer.from([0x91, 0x01, 0x02])), /not valid msgpack/, undefined);
    rejects(frame(Kind.Hello, Buffer.from('{"version":1}')), /not valid msgpack|expected a map/);
  });

  test('a batch header that is not an array of records', () => {
    rejects(reqFrame({ seq: 1 }), /expected an array of records/);
    rejects(reqFrame(7), /expected an array of records/);
    rejects(reqFrame([5]), /expected a record of 7 fields/);
  });

  test('request records of the wrong width', () => {
    rejects(reqFrame([rec().slice(0, 6)]), /requests\[0\]: expected a record of 7 fields/);
    rejects(reqFrame([rec(), [...rec({ seq: 2 }), 0]]), /requests\[1\]: expected a record of 7 fields/);
  });

  test('reply records of the wrong width', () => {
    rejects(repFrame([[1, 0, 0]]), /replies\[0\]: expected a record of 4 fields/);
    rejects(repFrame([[1, 0, 0, 0, 0]]), /replies\[0\]: expected a record of 4 fields/);
  });

  test('an empty batch', () => {
    rejects(reqFrame([]), /requests: empty batch/);
    rejects(repFrame([]), /replies: empty batch/);
  });

  test('a batch of more records than allowed', () => {
    const many = Array.from({ length: LIMITS.maxRecords + 1 }, (_, i) => rec({ seq: i, op: Op.Flush, length: 0 }));
    rejects(reqFrame(many), /4097 records exceed 4096/);
    rejects(repFrame(Array.from({ length: LIMITS.maxRecords + 1 }, (_, i) => [i, 0, 0, 0])), /records exceed/);
  });

  test('a non-integer field', () => {
    rejects(reqFrame([rec({ seq: 1.5 })]), /requests\[0\]\.seq: expected an integer/);
    rejects(reqFrame([rec({ offset: 512.25 })]), /requests\[0\]\.offset: expected an integer/);
    rejects(reqFrame([rec({ length: '4096' })]), /requests\[0\]\.length: expected an integer/);
    rejects(reqFrame([rec({ flags: null })]), /requests\[0\]\.flags: expected an integer/);
    rejects(repFrame([[1, true, 0, 0]]), /replies\[0\]\.status: expected an integer/);
  });

  test('a negative field', () => {
    rejects(reqFrame([rec({ seq: -1 })]), /\.seq: expected an integer/);
    rejects(reqFrame([rec({ offset: -4096 })]), /\.offset: expected an integer/);
    rejects(repFrame([[-3, 0, 0, 0]]), /\.seq: expected an integer/);
  });

  test('an integer past 2^53 (unsafe), as uint64 or as a float', () => {
    rejects(reqFrame([rec({ seq: new U64(2n ** 53n + 1n) })]), /\.seq: expected an integer/);
    rejects(reqFrame([rec({ offset: new U64(2n ** 63n) })]), /\.offset: expected an integer/);
    rejects(reqFrame([rec({ offset: 2 ** 60 })]), /\.offset: expected an integer/);
  });

  test('an unknown op', () => {
    rejects(reqFrame([rec({ op: 8 })]), /requests\[0\]\.op: expected an integer in 0\.\.7, got 8/);
  });

  test('unknown request flag bits', () => {
    rejects(reqFrame([rec({ flags: 4 })]), /requests\[0\]\.flags: unknown bits 0x4/);
    rejects(reqFrame([rec({ flags: 0x8001 })]), /unknown bits 0x8000/);
  });

  test('unknown payload flag bits', () => {
    rejects(reqFrame([rec({ op: Op.Write, length: 8, pflags: 2, wire: 8 })], Buffer.alloc(8, 1)), /payloadFlags/);
  });

  test('a READ that carries a payload', () => {
    rejects(reqFrame([rec({ op: Op.Read, length: 4, wire: 4 })], Buffer.alloc(4)), /READ carries a payload/);
    rejects(reqFrame([rec({ op: Op.Read, length: 4, pflags: PAYLOAD_LZ4 })]), /READ carries a payload/);
  });

  test('a FLUSH that carries a payload', () => {
    rejects(reqFrame([rec({ op: Op.Flush, length: 0, wire: 4 })], Buffer.alloc(4)), /non-WRITE request carries a payload/);
  });

  test('a WRITE of zero bytes', () => {
    rejects(reqFrame([rec({ op: Op.Write, length: 0, wire: 0 })]), /WRITE of zero bytes/);
  });

  test('a READ or WRITE longer than the negotiated max payload', () => {
    rejects(reqFrame([rec({ op: Op.Read, length: 8192 })]), /\.length: expected an integer in 0\.\.4096/, { maxPayload: 4096 });
    rejects(reqFrame([rec({ op: Op.Read, length: LIMITS.maxPayloadCeiling + 1 })]), /\.length/);
  });

  test('a payload shorter than its record declares', () => {
    rejects(reqFrame([rec({ op: Op.Write, length: 4096, wire: 4000 })], Buffer.alloc(4000, 1)), /payload is 4000 bytes, expected 4096/);
  });

  test('a payload longer than its record declares', () => {
    rejects(reqFrame([rec({ op: Op.Write, length: 4096, wire: 4200 })], Buffer.alloc(4200, 1)), /payload is 4200 bytes, expected 4096/);
  });

  test('a payload cut off by the end of the message', () => {
    rejects(reqFrame([rec({ op: Op.Write, length: 4096, wire: 4096 })], Buffer.alloc(100, 1)), /runs past the end of the message/);
    rejects(repFrame([[1, 0, 0, 4096]], Buffer.alloc(100, 1)), /runs past the end of the message/);
  });

  test('bytes after the last payload', () => {
    rejects(reqFrame([rec({ op: Op.Write, length: 4, wire: 4 })], Buffer.alloc(5, 1)), /1 bytes after the last payload/);
    rejects(reqFrame([rec()], Buffer.alloc(1)), /1 bytes after the last payload/);
    rejects(repFrame([[1, 0, 0, 0]], Buffer.alloc(3)), /3 bytes after the last payload/);
  });

  test('control messages with trailing bytes', () => {
    rejects(Buffer.concat([encodeWelcome(welcome), Buffer.alloc(1)]), /trailing bytes/);
  });

  test('an lz4 body whose prepended size is not the record length', () => {
    const body = maybeCompress(Buffer.alloc(4096, 3))!;
    assert.ok(body);
    const lie = Buffer.from(body);
    lie.writeUInt32LE(8192, 0);
    rejects(reqFrame([rec({ op: Op.Write, length: 4096, pflags: PAYLOAD_LZ4, wire: lie.length })], lie), /does not decompress to 4096/);
    rejects(reqFrame([rec({ op: Op.Write, length: 4096, pflags: PAYLOAD_LZ4, wire: 3 })], Buffer.alloc(3)), /does not decompress to 4096/);
  });

  test('an lz4 body whose prepended size matches but whose data decompresses to less', () => {
    const body = Buffer.from(maybeCompress(Buffer.alloc(2048, 3))!);
    body.writeUInt32LE(4096, 0);
    rejects(reqFrame([rec({ op: Op.Write, length: 4096, pflags: PAYLOAD_LZ4, wire: body.length })], body), /lz4 payload/);
  });

  test('an lz4 body whose prepended size matches but whose data decompresses to more', () => {
    const body = Buffer.from(maybeCompress(Buffer.alloc(4096, 3))!);
    body.writeUInt32LE(2048, 0);
    rejects(reqFrame([rec({ op: Op.Write, length: 2048, pflags: PAYLOAD_LZ4, wire: body.length })], body), /lz4 payload/);
  });

  test('a corrupt lz4 body', () => {
    const junk = Buffer.concat([Buffer.from([0, 16, 0, 0]), Buffer.from([0x1f, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x00])]);
    rejects(reqFrame([rec({ op: Op.Write, length: 4096, pflags: PAYLOAD_LZ4, wire: junk.length })], junk), /lz4 payload is corrupt|decompressed to/);
    rejects(repFrame([[1, 0, PAYLOAD_LZ4, junk.length]], junk), /lz4 payload is corrupt|decompressed to/);
  });

  test('an lz4 reply body cut off by the end of the message', () => {
    // The size prepended to the body is not there to read.
    rejects(repFrame([[1, 0, PAYLOAD_LZ4, 64]]), /runs past the end|does not decompress|exceeds/);
    rejects(repFrame([[1, 0, PAYLOAD_LZ4, 64]], Buffer.from([0, 16])), /runs past the end|does not decompress|exceeds/);
  });

  test('an lz4 reply whose prepended size exceeds the max payload', () => {
    const body = Buffer.from(maybeCompress(Buffer.alloc(8192))!);
    assert.throws(() => decodeMessage(repFrame([[1, 0, PAYLOAD_LZ4, body.length]], body), { maxPayload: 4096 }), ProtocolError);
  });

  test('an error reply that carries data', () => {
    rejects(repFrame([[1, Errno.EIO, 0, 4]], Buffer.alloc(4)), /an error reply carries data/);
    rejects(repFrame([[1, Errno.EIO, PAYLOAD_LZ4, 0]]), /an error reply carries data/);
  });

  test('a reply status outside the errno range', () => {
    rejects(repFrame([[1, 4096, 0, 0]]), /\.status/);
  });

  test('a hello of another protocol version', () => {
    const h = { version: 2, clientId: 'x', features: [], maxPayload: 1 << 20 };
    rejects(frame(Kind.Hello, msgpack(h)), /hello\.version 2 is not supported/);
    rejects(frame(Kind.Hello, msgpack({ ...h, version: 0 })), /hello\.version 0 is not supported/);
  });

  test('a hello with missing or mistyped fields', () => {
    const h = { version: 1, clientId: 'x', features: [], maxPayload: 1 << 20 };
    rejects(frame(Kind.Hello, msgpack([h])), /hello: expected a map/);
    rejects(frame(Kind.Hello, msgpack({ ...h, clientId: 5 })), /hello\.clientId/);
    rejects(frame(Kind.Hello, msgpack({ ...h, features: 'lz4' })), /hello\.features/);
    rejects(frame(Kind.Hello, msgpack({ ...h, features: [1] })), /hello\.features\[0\]/);
    rejects(frame(Kind.Hello, msgpack({ ...h, maxPayload: 1024 })), /at least 4096/);
    rejects(frame(Kind.Hello, msgpack({ ...h, resume: 7 })), /hello\.resume/);
    rejects(frame(Kind.Hello, msgpack({ ...h, reclaim: 'yes' })), /hello\.reclaim/);
    rejects(frame(Kind.Hello, msgpack({ version: 1, features: [], maxPayload: 4096 })), /hello\.clientId/);
  });

  test('a welcome with a block size that is not a power of two of at least 512', () => {
    for (const blockSize of [1000, 256, 0, 3 << 10, 1 << 17]) {
      rejects(frame(Kind.Welcome, msgpack({ ...welcome, blockSize, size: 3 << 20 })), /welcome\.blockSize/);
    }
  });

  test('a welcome whose size is not a multiple of its block size', () => {
    rejects(encodeWelcome({ ...welcome, size: (64 << 20) + 512 }), /not a multiple of the block size/);
  });

  test('a welcome of another protocol version', () => {
    rejects(encodeWelcome({ ...welcome, version: 2 }), /welcome\.version 2 is not supported/);
  });

  test('a control message larger than 64 KiB', () => {
    const h = { version: 1, clientId: 'x', features: [], maxPayload: 1 << 20 };
    const big = frame(Kind.Hello, Buffer.concat([msgpack(h)]));
    rejects(Buffer.concat([big.subarray(0, 8), big.subarray(8), Buffer.alloc(65 << 10)]), /too large/);
  });
});

describe('batch headers are written and read without msgpackr, as msgpackr would (lever 18)', () => {
  const packr = new Packr({ useRecords: false, moreTypes: false });
  /** msgpackr's encoding of a batch header, prefixed: what encodeRequests/encodeReplies wrote before lever 18. */
  const packed = (kind: Kind, records: unknown[]) => frame(kind, packr.pack(records));
  const header = (parts: Buffer[]) => parts[0]!;
  // Each size of integer msgpack has, at both of its edges, and the largest safe integer.
  const edges = [0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 512, Number.MAX_SAFE_INTEGER];
  const pick = (rnd: () => number, xs: readonly number[]) => xs[Math.floor(rnd() * xs.length)]!;

  test('request and reply headers are msgpackr\'s bytes, for every integer size and batch size', () => {
    const rnd = rng(18);
    for (const n of [1, 15, 16, 17, 300, LIMITS.maxRecords]) {
      const reqs: BlockRequest[] = Array.from({ length: n }, () => ({
        seq: pick(rnd, edges), op: Op.Discard, flags: pick(rnd, [0, FLAG_FUA, 0xffff]), offset: pick(rnd, edges), length: pick(rnd, edges),
      }));
      const recs = reqs.map((r) => [r.seq, r.op, r.flags, r.offset, r.length, 0, 0]);
      assert.deepEqual(header(encodeRequests(reqs, false)), packed(Kind.Requests, recs), `${n} requests`);
      const reps: BlockReply[] = reqs.map((r) => ({ seq: r.seq, status: pick(rnd, [0, Errno.EIO, 4095]) }));
      assert.deepEqual(header(encodeReplies(reps, false)), packed(Kind.Replies, reps.map((r) => [r.seq, r.status, 0, 0])), `${n} replies`);
    }
    const data = pattern(300, 4);
    const withData = encodeReplies([{ seq: 70000, status: 0, data }], false);
    assert.deepEqual(header(withData), packed(Kind.Replies, [[70000, 0, 0, 300]]));
  });

  test('what the writer does not take (negative, fractional, past 2^53) goes through msgpackr, and the reader refuses it as before', () => {
    for (const bad of [-1, 1.5, 2 ** 60, NaN]) {
      const reqs: BlockRequest[] = [{ seq: 1, op: Op.Flush, flags: 0, offset: bad, length: 0 }];
      const msg = header(encodeRequests(reqs, false));
      assert.deepEqual(msg, packed(Kind.Requests, [[1, Op.Flush, 0, bad, 0, 0, 0]]), String(bad));
      rejects(msg, /requests\[0\]\.offset: expected an integer/);
    }
  });

  test('random batches read the same from msgpackr\'s smallest encoding and from a wider one (array16 everywhere)', () => {
    const rnd = rng(7);
    for (let round = 0; round < 200; round++) {
      const n = 1 + Math.floor(rnd() * 40);
      const recs = Array.from({ length: n }, () => rec({ seq: pick(rnd, edges), op: pick(rnd, [Op.Read, Op.Flush, Op.Discard]), offset: pick(rnd, edges), length: pick(rnd, [0, 512, 4096, 1 << 20]) }));
      const reps = Array.from({ length: n }, () => [pick(rnd, edges), pick(rnd, [0, Errno.EIO]), 0, 0]);
      assert.deepEqual(decodeMessage(packed(Kind.Requests, recs)), decodeMessage(reqFrame(recs)));
      assert.deepEqual(decodeMessage(packed(Kind.Replies, reps)), decodeMessage(repFrame(reps)));
    }
  });

  test('malformed records in msgpackr\'s encoding are refused with the messages of the msgpackr path', () => {
    const cases: Array<[unknown[], RegExp]> = [
      [[rec({ seq: 1.5 })], /requests\[0\]\.seq: expected an integer/],
      [[rec({ offset: 2 ** 60 })], /requests\[0\]\.offset: expected an integer/],
      [[rec({ op: 8 })], /requests\[0\]\.op: expected an integer in 0\.\.7, got 8/],
      [[rec(), rec({ flags: 0x8000 })], /requests\[1\]\.flags: unknown bits 0x8000/],
      [[rec({ length: 2 << 20 })], /requests\[0\]\.length: expected an integer in 0\.\.1048576/],
      [[rec({ pflags: 2 })], /requests\[0\]\.payloadFlags/],
      [[rec({ wire: 10 })], /requests\[0\]: READ carries a payload/],
      [[rec({ op: Op.Write, length: 0 })], /WRITE of zero bytes/],
      [[rec({ op: Op.Write, length: 4, wire: 4 })], /runs past the end of the message/],
      [[rec().slice(0, 6)], /requests\[0\]: expected a record of 7 fields/],
      [[], /requests: empty batch/],
    ];
    for (const [recs, message] of cases) {
      rejects(packed(Kind.Requests, recs), message, { maxPayload: 1 << 20 });
      rejects(reqFrame(recs), message, { maxPayload: 1 << 20 });
    }
    rejects(packed(Kind.Replies, [[1, 5000, 0, 0]]), /replies\[0\]\.status: expected an integer in 0\.\.4095/);
    rejects(packed(Kind.Replies, [[1, Errno.EIO, 0, 8]]), /an error reply carries data/);
  });

  test('a header cut short or with a byte changed anywhere is a ProtocolError or a batch, never another error', () => {
    const good = joinParts(encodeRequests([
      { seq: 300, op: Op.Write, flags: FLAG_FUA, offset: 2 ** 33, length: 4, payload: Buffer.from('abcd') },
      { seq: 301, op: Op.Read, flags: 0, offset: 70000, length: 4096 },
    ], false));
    const h = good.readUInt32LE(4);
    const rnd = rng(3);
    const decodes = (buf: Buffer) => {
      try {
        decodeMessage(buf);
      } catch (e) {
        assert.ok(e instanceof ProtocolError, `${buf.toString('hex')}: ${(e as Error).stack}`);
      }
    };
    for (let cut = 0; cut < h; cut++) {
      const b = Buffer.from(good);
      b.writeUInt32LE(cut, 4);
      decodes(b);
    }
    for (let i = 0; i < 3000; i++) {
      const b = Buffer.from(good);
      b[8 + Math.floor(rnd() * h)] = Math.floor(rnd() * 256);
      decodes(b);
    }
  });
});


describe('replica-set requests (CHECKSUM, META_READ, META_WRITE)', () => {
  test('a META_WRITE carries its record as payload; META_READ and CHECKSUM carry none', () => {
    const rec0 = encodeSetRecord({ setId: 'abc', epoch: 3, inSync: ['ws://a:1/x'] });
    const msg = decodeMessage(reqFrame([rec({ op: Op.MetaWrite, length: rec0.length, wire: rec0.length }), rec({ seq: 2, op: Op.MetaRead, length: 0 }), rec({ seq: 3, op: Op.Checksum, length: 64 << 20 })], rec0));
    assert.equal(msg.kind, 'requests');
    if (msg.kind !== 'requests') return;
    assert.deepEqual(parseSetRecord(msg.requests[0]!.payload!), { setId: 'abc', epoch: 3, inSync: ['ws://a:1/x'] });
    assert.equal(msg.requests[2]!.length, 64 << 20);
  });
  test('limits: a record over 64 KiB, a META_READ with a length, a CHECKSUM over 64 MiB, a META_WRITE of nothing', () => {
    rejects(reqFrame([rec({ op: Op.MetaWrite, length: (64 << 10) + 1, wire: (64 << 10) + 1 })], Buffer.alloc((64 << 10) + 1)), /length/);
    rejects(reqFrame([rec({ op: Op.MetaRead, length: 1 })]), /length/);
    rejects(reqFrame([rec({ op: Op.Checksum, length: (64 << 20) + 1 })]), /length/);
    rejects(reqFrame([rec({ op: Op.MetaWrite, length: 0 })]), /META_WRITE of zero bytes/);
    rejects(reqFrame([rec({ op: Op.Checksum, length: 4096, wire: 4 })], Buffer.alloc(4)), /carries a payload/);
  });
  test('a membership record that is not one is refused with the reason', () => {
    assert.throws(() => parseSetRecord(Buffer.from('nope')), /not JSON/);
    assert.throws(() => parseSetRecord(Buffer.from('{"setId":"a b","epoch":1,"inSync":["x"]}')), /setId/);
    assert.throws(() => parseSetRecord(Buffer.from('{"setId":"ab","epoch":-1,"inSync":["x"]}')), /epoch/);
    assert.throws(() => parseSetRecord(Buffer.from('{"setId":"ab","epoch":1,"inSync":[]}')), /inSync/);
  });
});
