// Encoder and decoder of wsblk messages.
//
// Every binary WebSocket message starts with an 8-byte prefix:
//   u8 kind, u8 0, u16 0, u32 LE header length H
// then H bytes of msgpack. Hello and welcome carry a map; batches carry an array of records,
// and the payloads follow the header raw, in record order. Payloads never pass through msgpack.
//   request record: [seq, op, flags, offset, length, payloadFlags, wireLength]
//   reply record:   [seq, status, payloadFlags, wireLength]
import { Packr, Unpackr } from 'msgpackr';
import { createRequire } from 'node:module';
import {
  Kind, LIMITS, LZ4_MIN_BYTES, LZ4_MIN_SAVING_SHIFT, Op, OP_COUNT, OP_NAMES, PAYLOAD_LZ4, PROTOCOL_VERSION,
  REQUEST_FLAGS_MASK,
} from './constants.js';
import { ProtocolError } from './errors.js';
import type { BlockReply, BlockRequest, Hello, Message, Welcome } from './messages.js';

// lz4-napi is loaded on first use: a process that never negotiates lz4 (the default) does not
// map it (about 10 MiB of RSS in each daemon and server).
type Lz4 = { compressSync(data: Buffer): Buffer; uncompressSync(data: Buffer): Buffer };
let lz4Module: Lz4 | undefined;
const lz4 = (): Lz4 => (lz4Module ??= createRequire(import.meta.url)('lz4-napi') as Lz4);

const PREFIX = 8;
const EMPTY = Buffer.alloc(0);
const packr = new Packr({ useRecords: false, moreTypes: false });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

function prefixed(kind: Kind, header: Buffer): Buffer {
  const out = Buffer.allocUnsafe(PREFIX + header.length);
  out.writeUInt32LE(kind, 0);
  out.writeUInt32LE(header.length, 4);
  header.copy(out, PREFIX);
  return out;
}

export function encodeHello(hello: Hello): Buffer {
  return prefixed(Kind.Hello, packr.pack(hello));
}

export function encodeWelcome(welcome: Welcome): Buffer {
  return prefixed(Kind.Welcome, packr.pack(welcome));
}

/** lz4 a payload when it saves at least 12.5 %; returns null when it does not pay. */
export function maybeCompress(data: Buffer): Buffer | null {
  if (data.length < LZ4_MIN_BYTES) return null;
  const c = lz4().compressSync(data);
  return c.length <= data.length - (data.length >>> LZ4_MIN_SAVING_SHIFT) ? c : null;
}

// --- batch headers, written and read by hand ------------------------------------------------
// A batch header is a msgpack array of records of non-negative integers. msgpackr's generic
// pack/unpack (type dispatch, a record array per request, a copy into the prefixed buffer) was
// the largest single item of our own per-request work in the daemon's profile under the VM
// (bench/RESULTS.md, lever 18). The writer below produces exactly msgpackr's bytes for such
// records (an integer of 2^32 or more as a float64, as msgpackr writes it, so older peers read
// it); the reader takes that subset and leaves anything else to msgpackr, whose result or error
// stays what it always was.

const REQUEST_WIDTH = 7;
const REPLY_WIDTH = 4;

/** Bytes msgpackr uses for a non-negative integer. */
function uintBytes(v: number): number {
  return v < 0x80 ? 1 : v < 0x100 ? 2 : v < 0x10000 ? 3 : v < 0x100000000 ? 5 : 9;
}

function writeUint(buf: Buffer, pos: number, v: number): number {
  if (v < 0x80) {
    buf[pos] = v;
    return pos + 1;
  }
  if (v < 0x100) {
    buf[pos] = 0xcc;
    buf[pos + 1] = v;
    return pos + 2;
  }
  if (v < 0x10000) {
    buf[pos] = 0xcd;
    buf[pos + 1] = v >>> 8;
    buf[pos + 2] = v & 0xff;
    return pos + 3;
  }
  if (v < 0x100000000) {
    buf[pos] = 0xce;
    buf.writeUInt32BE(v, pos + 1);
    return pos + 5;
  }
  buf[pos] = 0xcb;
  buf.writeDoubleBE(v, pos + 1);
  return pos + 9;
}

/** An array header of n < 0x10000 elements (a batch has at most LIMITS.maxRecords). */
function writeArrayHeader(buf: Buffer, pos: number, n: number): number {
  if (n < 16) {
    buf[pos] = 0x90 | n;
    return pos + 1;
  }
  buf[pos] = 0xdc;
  buf.writeUInt16BE(n, pos + 1);
  return pos + 3;
}

/** The fields of a batch's records, flat (record i's field k at i * width + k); reused. */
let fields: number[] = [];

/** Makes `fields` hold at least `n` values. */
function fieldsFor(n: number): void {
  if (fields.length < n) fields = new Array<number>(n).fill(0);
}

/**
 * Writes the prefixed header of `n` records of `width` fields from `fields`. Returns undefined
 * when a field is not a non-negative safe integer (or for 64 Ki records or more, more than a
 * batch may hold): the caller then lets msgpackr write it.
 */
function writeRecords(kind: Kind, n: number, width: number): Buffer | undefined {
  if (n >= 0x10000) return undefined;
  let size = (n < 16 ? 1 : 3) + n;
  for (let i = 0; i < n * width; i++) {
    const v = fields[i]!;
    if (!(v >= 0 && v <= Number.MAX_SAFE_INTEGER && Math.floor(v) === v)) return undefined;
    size += uintBytes(v);
  }
  const out = Buffer.allocUnsafe(PREFIX + size);
  out.writeUInt32LE(kind, 0);
  out.writeUInt32LE(size, 4);
  let pos = writeArrayHeader(out, PREFIX, n);
  for (let i = 0, f = 0; i < n; i++) {
    out[pos++] = 0x90 | width;
    for (let k = 0; k < width; k++) pos = writeUint(out, pos, fields[f++]!);
  }
  return out;
}

/** msgpackr's encoding of the same records (odd values the fast writer does not take). */
function packRecords(kind: Kind, n: number, width: number): Buffer {
  const records: number[][] = new Array(n);
  for (let i = 0; i < n; i++) records[i] = fields.slice(i * width, (i + 1) * width);
  return prefixed(kind, packr.pack(records));
}

/** Appends a payload (lz4 when it pays) to the parts; its payloadFlags and wireLength go to fields[at], fields[at + 1]. */
function addPayload(parts: Buffer[], data: Buffer | undefined, lz4: boolean, at: number): void {
  if (!data) {
    fields[at] = 0;
    fields[at + 1] = 0;
    return;
  }
  const c = lz4 ? maybeCompress(data) : null;
  parts.push(c ?? data);
  fields[at] = c ? PAYLOAD_LZ4 : 0;
  fields[at + 1] = (c ?? data).length;
}

/**
 * Encodes a batch of requests. Returns the parts of one message: the prefixed header first,
 * then the payloads as they are (no copy). The sender writes them as one frame.
 */
export function encodeRequests(requests: readonly BlockRequest[], lz4: boolean): Buffer[] {
  const parts: Buffer[] = [EMPTY];
  const n = requests.length;
  fieldsFor(n * REQUEST_WIDTH);
  for (let i = 0, f = 0; i < n; i++, f += REQUEST_WIDTH) {
    const r = requests[i]!;
    fields[f] = r.seq;
    fields[f + 1] = r.op;
    fields[f + 2] = r.flags;
    fields[f + 3] = r.offset;
    fields[f + 4] = r.length;
    addPayload(parts, r.payload, lz4, f + 5);
  }
  parts[0] = writeRecords(Kind.Requests, n, REQUEST_WIDTH) ?? packRecords(Kind.Requests, n, REQUEST_WIDTH);
  return parts;
}

/** Encodes a batch of replies; same layout as encodeRequests. */
export function encodeReplies(replies: readonly BlockReply[], lz4: boolean): Buffer[] {
  const parts: Buffer[] = [EMPTY];
  const n = replies.length;
  fieldsFor(n * REPLY_WIDTH);
  for (let i = 0, f = 0; i < n; i++, f += REPLY_WIDTH) {
    const r = replies[i]!;
    fields[f] = r.seq;
    fields[f + 1] = r.status;
    addPayload(parts, r.data, lz4, f + 2);
  }
  parts[0] = writeRecords(Kind.Replies, n, REPLY_WIDTH) ?? packRecords(Kind.Replies, n, REPLY_WIDTH);
  return parts;
}

/**
 * Reads a header of `width`-field records of integers into `fields` without msgpackr. Returns
 * the number of records, or -1 when the header is anything else (an empty or oversized batch,
 * another width, other types, a uint64, trailing bytes...): msgpackr then reads it as before.
 */
function readRecords(buf: Buffer, end: number, width: number): number {
  let pos = PREFIX;
  if (end <= pos) return -1;
  const b = buf[pos]!;
  let n: number;
  if ((b & 0xf0) === 0x90) {
    n = b & 0x0f;
    pos += 1;
  } else if (b === 0xdc && pos + 3 <= end) {
    n = buf.readUInt16BE(pos + 1);
    pos += 3;
  } else {
    return -1;
  }
  if (n === 0 || n > LIMITS.maxRecords) return -1;
  fieldsFor(n * width);
  const tag = 0x90 | width;
  let f = 0;
  for (let i = 0; i < n; i++) {
    if (pos >= end || buf[pos] !== tag) return -1;
    pos++;
    for (let k = 0; k < width; k++) {
      if (pos >= end) return -1;
      const t = buf[pos]!;
      if (t < 0x80) {
        fields[f++] = t;
        pos += 1;
      } else if (t === 0xcc && pos + 2 <= end) {
        fields[f++] = buf[pos + 1]!;
        pos += 2;
      } else if (t === 0xcd && pos + 3 <= end) {
        fields[f++] = (buf[pos + 1]! << 8) | buf[pos + 2]!;
        pos += 3;
      } else if (t === 0xce && pos + 5 <= end) {
        fields[f++] = buf.readUInt32BE(pos + 1);
        pos += 5;
      } else if (t === 0xcb && pos + 9 <= end) {
        fields[f++] = buf.readDoubleBE(pos + 1);
        pos += 9;
      } else {
        return -1;
      }
    }
  }
  return pos === end ? n : -1;
}

/**
 * The batch header's records as flat fields, record i's field k at i * width + k: `fields` when
 * the fast reader took the header, else msgpackr's records (checked for shape, with the messages
 * of old) flattened, whose values of other types uint() then names.
 */
function batchFields(buf: Buffer, headerEnd: number, width: number, what: string): { n: number; values: readonly unknown[] } {
  const n = readRecords(buf, headerEnd, width);
  if (n >= 0) return { n, values: fields };
  const recs = records(unpackHeader(buf, headerEnd), width, what);
  return { n: recs.length, values: recs.flat() };
}

export interface DecodeLimits {
  /** Negotiated max READ/WRITE payload (bytes). */
  maxPayload: number;
}

const DEFAULT_LIMITS: DecodeLimits = { maxPayload: LIMITS.maxPayloadCeiling };

function fail(msg: string): never {
  throw new ProtocolError(msg);
}

function uint(v: unknown, what: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    fail(`${what}: expected an integer in 0..${max}, got ${typeof v === 'number' ? v : typeof v}`);
  }
  return v;
}

/**
 * uint() for field `name` of record `i` of a batch (`list` is "requests" or "replies"). The
 * record's name for the error message ("requests[3].seq") is built only when one is thrown: per
 * request, those strings were the decoders' main allocation (bench/RESULTS.md, lever 23).
 */
function field(v: unknown, list: string, i: number, name: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v === 'number' && v >= 0 && v <= max && Number.isInteger(v)) return v;
  return uint(v, `${list}[${i}].${name}`, max);
}

/** Throws a ProtocolError about record `i` of a batch: "replies[3]: ...". */
function failAt(list: string, i: number, msg: string): never {
  fail(`${list}[${i}]: ${msg}`);
}

function str(v: unknown, what: string, max = 256): string {
  if (typeof v !== 'string' || v.length > max) fail(`${what}: expected a string of at most ${max} characters`);
  return v;
}

function bool(v: unknown, what: string): boolean {
  if (typeof v !== 'boolean') fail(`${what}: expected a boolean`);
  return v;
}

function strList(v: unknown, what: string): string[] {
  if (!Array.isArray(v) || v.length > 32) fail(`${what}: expected a list of at most 32 strings`);
  return v.map((x, i) => str(x, `${what}[${i}]`, 64));
}

function readPrefix(buf: Buffer): { kind: number; headerEnd: number } {
  if (buf.length < PREFIX) fail(`message of ${buf.length} bytes is shorter than the ${PREFIX}-byte prefix`);
  const kind = buf[0]!;
  if (buf[1] !== 0 || buf.readUInt16LE(2) !== 0) fail('reserved prefix bytes are not zero');
  const h = buf.readUInt32LE(4);
  if (h > buf.length - PREFIX) fail(`header length ${h} runs past the end of a ${buf.length}-byte message`);
  if (h > LIMITS.maxHeaderBytes) fail(`header length ${h} exceeds ${LIMITS.maxHeaderBytes}`);
  return { kind, headerEnd: PREFIX + h };
}

function unpackHeader(buf: Buffer, headerEnd: number): unknown {
  if (headerEnd === PREFIX) fail('empty header');
  try {
    return unpackr.unpack(buf.subarray(PREFIX, headerEnd));
  } catch (e) {
    fail(`header is not valid msgpack: ${(e as Error).message}`);
  }
}

function decodeHello(v: unknown): Hello {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('hello: expected a map');
  const o = v as Record<string, unknown>;
  const version = uint(o.version, 'hello.version', 0xffff);
  if (version !== PROTOCOL_VERSION) fail(`hello.version ${version} is not supported (this server speaks ${PROTOCOL_VERSION})`);
  const hello: Hello = {
    version,
    clientId: str(o.clientId, 'hello.clientId'),
    features: strList(o.features, 'hello.features'),
    maxPayload: uint(o.maxPayload, 'hello.maxPayload', LIMITS.maxPayloadCeiling),
  };
  if (o.resume !== undefined && o.resume !== null) hello.resume = str(o.resume, 'hello.resume', 128);
  if (o.secret !== undefined && o.secret !== null) hello.secret = str(o.secret, 'hello.secret', 128);
  if (o.host !== undefined && o.host !== null) hello.host = str(o.host, 'hello.host', 255);
  if (o.readOnly !== undefined && o.readOnly !== null) hello.readOnly = bool(o.readOnly, 'hello.readOnly');
  if (o.steal !== undefined && o.steal !== null) hello.steal = bool(o.steal, 'hello.steal');
  if (o.reclaim !== undefined && o.reclaim !== null) hello.reclaim = bool(o.reclaim, 'hello.reclaim');
  if (o.setId !== undefined && o.setId !== null) hello.setId = str(o.setId, 'hello.setId', 64);
  if (o.setEpoch !== undefined && o.setEpoch !== null) hello.setEpoch = uint(o.setEpoch, 'hello.setEpoch');
  if ((hello.setId === undefined) !== (hello.setEpoch === undefined)) fail('hello.setId and hello.setEpoch go together');
  if (hello.maxPayload < 4096) fail('hello.maxPayload must be at least 4096');
  return hello;
}

function decodeWelcome(v: unknown): Welcome {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('welcome: expected a map');
  const o = v as Record<string, unknown>;
  const w: Welcome = {
    version: uint(o.version, 'welcome.version', 0xffff),
    exportName: str(o.exportName, 'welcome.exportName'),
    size: uint(o.size, 'welcome.size'),
    blockSize: uint(o.blockSize, 'welcome.blockSize', 1 << 16),
    readOnly: bool(o.readOnly, 'welcome.readOnly'),
    flush: bool(o.flush, 'welcome.flush'),
    fua: bool(o.fua, 'welcome.fua'),
    discard: bool(o.discard, 'welcome.discard'),
    writeZeroes: bool(o.writeZeroes, 'welcome.writeZeroes'),
    maxPayload: uint(o.maxPayload, 'welcome.maxPayload', LIMITS.maxPayloadCeiling),
    sessionId: str(o.sessionId, 'welcome.sessionId', 128),
    epoch: uint(o.epoch, 'welcome.epoch'),
    resumed: bool(o.resumed, 'welcome.resumed'),
    nextSeq: uint(o.nextSeq, 'welcome.nextSeq'),
    features: strList(o.features, 'welcome.features'),
  };
  if (w.version !== PROTOCOL_VERSION) fail(`welcome.version ${w.version} is not supported`);
  if (w.blockSize < 512 || (w.blockSize & (w.blockSize - 1)) !== 0) fail(`welcome.blockSize ${w.blockSize} is not a power of two >= 512`);
  if (w.size % w.blockSize !== 0) fail(`welcome.size ${w.size} is not a multiple of the block size`);
  return w;
}

function records(v: unknown, width: number, what: string): unknown[][] {
  if (!Array.isArray(v)) fail(`${what}: expected an array of records`);
  if (v.length === 0) fail(`${what}: empty batch`);
  if (v.length > LIMITS.maxRecords) fail(`${what}: ${v.length} records exceed ${LIMITS.maxRecords}`);
  for (let i = 0; i < v.length; i++) {
    const r = v[i];
    if (!Array.isArray(r) || r.length !== width) fail(`${what}[${i}]: expected a record of ${width} fields`);
  }
  return v as unknown[][];
}

/**
 * Takes `wire` bytes at `pos` and returns the payload of `length` bytes (decompressed): the
 * payload of record `i` of a batch (see field() for `list`).
 */
function payloadAt(buf: Buffer, pos: number, wire: number, pflags: number, length: number, list: string, i: number): Buffer {
  if (pos + wire > buf.length) failAt(list, i, `payload of ${wire} bytes runs past the end of the message`);
  const body = buf.subarray(pos, pos + wire);
  if (pflags === 0) {
    if (wire !== length) failAt(list, i, `payload is ${wire} bytes, expected ${length}`);
    return body;
  }
  if (wire < 4 || body.readUInt32LE(0) !== length) failAt(list, i, `lz4 payload does not decompress to ${length} bytes`);
  let out: Buffer;
  try {
    out = lz4().uncompressSync(body);
  } catch (e) {
    failAt(list, i, `lz4 payload is corrupt: ${(e as Error).message}`);
  }
  if (out.length !== length) failAt(list, i, `lz4 payload decompressed to ${out.length} bytes, expected ${length}`);
  return out;
}

function decodeRequests(buf: Buffer, headerEnd: number, limits: DecodeLimits): BlockRequest[] {
  const { n, values } = batchFields(buf, headerEnd, REQUEST_WIDTH, 'requests');
  const out: BlockRequest[] = new Array(n);
  let pos = headerEnd;
  for (let i = 0, f = 0; i < n; i++, f += REQUEST_WIDTH) {
    const seq = field(values[f], 'requests', i, 'seq');
    const op = field(values[f + 1], 'requests', i, 'op', OP_COUNT - 1) as Op;
    const flags = field(values[f + 2], 'requests', i, 'flags', 0xffff);
    if ((flags & ~REQUEST_FLAGS_MASK) !== 0) fail(`requests[${i}].flags: unknown bits 0x${(flags & ~REQUEST_FLAGS_MASK).toString(16)}`);
    const offset = field(values[f + 3], 'requests', i, 'offset');
    const isData = op === Op.Read || op === Op.Write;
    const maxLength = isData ? limits.maxPayload : op === Op.Checksum ? LIMITS.maxChecksumBytes
      : op === Op.MetaWrite ? LIMITS.maxMetaBytes : op === Op.MetaRead ? 0 : LIMITS.maxRangeBytes;
    const length = field(values[f + 4], 'requests', i, 'length', maxLength);
    const pflags = field(values[f + 5], 'requests', i, 'payloadFlags', PAYLOAD_LZ4);
    const wire = field(values[f + 6], 'requests', i, 'wireLength', limits.maxPayload + 16);
    const req: BlockRequest = { seq, op, flags, offset, length };
    if (op === Op.Write || op === Op.MetaWrite) {
      if (length === 0) failAt('requests', i, `${OP_NAMES[op]} of zero bytes`);
      req.payload = payloadAt(buf, pos, wire, pflags, length, 'requests', i);
      pos += wire;
    } else if (wire !== 0 || pflags !== 0) {
      failAt('requests', i, `${op === Op.Read ? 'READ' : 'a non-WRITE request'} carries a payload`);
    }
    out[i] = req;
  }
  if (pos !== buf.length) fail(`requests: ${buf.length - pos} bytes after the last payload`);
  return out;
}

function decodeReplies(buf: Buffer, headerEnd: number, limits: DecodeLimits): BlockReply[] {
  const { n, values } = batchFields(buf, headerEnd, REPLY_WIDTH, 'replies');
  const out: BlockReply[] = new Array(n);
  let pos = headerEnd;
  for (let i = 0, f = 0; i < n; i++, f += REPLY_WIDTH) {
    const seq = field(values[f], 'replies', i, 'seq');
    const status = field(values[f + 1], 'replies', i, 'status', 4095);
    const pflags = field(values[f + 2], 'replies', i, 'payloadFlags', PAYLOAD_LZ4);
    const wire = field(values[f + 3], 'replies', i, 'wireLength', limits.maxPayload + 16);
    const rep: BlockReply = { seq, status };
    if (wire > 0 || pflags !== 0) {
      if (status !== 0) failAt('replies', i, 'an error reply carries data');
      // Bounds first: the lz4 size prefix below is read from the message itself.
      if (pos + wire > buf.length) failAt('replies', i, `payload of ${wire} bytes runs past the end of the message`);
      // The decompressed length of an lz4 body is its prepended size; checked by the consumer.
      const length = pflags === 0 ? wire : wire >= 4 ? buf.readUInt32LE(pos) : -1;
      if (length < 0 || length > limits.maxPayload) failAt('replies', i, `data of ${length} bytes exceeds ${limits.maxPayload}`);
      rep.data = payloadAt(buf, pos, wire, pflags, length, 'replies', i);
      pos += wire;
    }
    out[i] = rep;
  }
  if (pos !== buf.length) fail(`replies: ${buf.length - pos} bytes after the last payload`);
  return out;
}

/** Decodes one binary message; throws ProtocolError on anything malformed. */
export function decodeMessage(buf: Buffer, limits: DecodeLimits = DEFAULT_LIMITS): Message {
  const { kind, headerEnd } = readPrefix(buf);
  switch (kind) {
    case Kind.Hello:
    case Kind.Welcome: {
      if (buf.length > LIMITS.maxControlBytes) fail(`control message of ${buf.length} bytes is too large`);
      if (headerEnd !== buf.length) fail('control message has trailing bytes');
      const v = unpackHeader(buf, headerEnd);
      return kind === Kind.Hello ? { kind: 'hello', hello: decodeHello(v) } : { kind: 'welcome', welcome: decodeWelcome(v) };
    }
    case Kind.Requests:
      return { kind: 'requests', requests: decodeRequests(buf, headerEnd, limits) };
    case Kind.Replies:
      return { kind: 'replies', replies: decodeReplies(buf, headerEnd, limits) };
    default:
      fail(`unknown message kind ${kind}`);
  }
}

/** One buffer from a message's parts (for small batches and tests). */
export function joinParts(parts: readonly Buffer[]): Buffer {
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}
