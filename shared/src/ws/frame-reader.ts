// Parses WebSocket frames from socket bytes (RFC 6455 5.2), for both roles.
//
// Why our own and not ws's: ws copies every frame that spans socket reads into a buffer of its
// own (a 1 MiB READ reply arrives in ~16 reads: 1 MiB copied in user space), allocates a buffer
// per socket read, and runs each frame through a Writable stream. Here:
// - the client reads with `onread`: the kernel writes straight into the buffer we name for each
//   read, so a large frame is read into its own buffer (no copy after the first read), and
//   small frames share an arena (one allocation for many reads, no buffer per read); that
//   buffer grows with the bytes that arrive, never with the length a header claims;
// - the server re-opens http's upgrade socket with onread too (acceptUpgrade, on a duplicate
//   of its descriptor); where it cannot (TLS), it reads 'data' events and hands complete frames
//   over as views of the chunk they arrived in, copying only a frame split across chunks.
// Frames are checked as RFC 6455 says (reserved bits, opcodes, control frame size, masking by
// role, lengths, message order), each as soon as its bytes are in, as ws's Receiver does (the
// differential fuzz test holds the two together); the first violation closes with 1002 (1009:
// too big, or in too many fragments).
import type { BufferPool } from '../pool.js';
import type { ReadTarget } from '../onread.js';
import { Opcode, WS_CLOSE } from './frame.js';
import { unmask } from './mask.js';

export interface FrameSink {
  /** A whole data message (one frame, or fragments joined). */
  onMessage(data: Buffer, binary: boolean): void;
  /** A control frame (close, ping, pong) with its payload. */
  onControl(opcode: Opcode, payload: Buffer): void;
  /** The peer broke the framing rules; nothing more is parsed. */
  onProtocolError(code: number, reason: string): void;
}

/** Bytes of one arena (a buffer that many small frames and reads share). */
const ARENA = 128 * 1024;
/** A read gets at least this much room; less left in the arena starts a new one. */
const MIN_READ = 16 * 1024;
/** A frame that does not fit the arena gets a buffer of its own when its payload is this large. */
const OWN_BUFFER_AT = 32 * 1024;
/**
 * A frame's own buffer first holds at most this much, whatever its header claims: a 1 MiB READ
 * reply or WRITE (with its record header) is still read straight into one buffer, and a
 * header alone pins no more than this per connection (until the frame timeout closes it).
 */
const BIG_FIRST = (1 << 20) + 64 * 1024;
/** Then it grows by this factor as bytes arrive, so memory follows what the peer really sent. */
const BIG_GROWTH = 4;
/**
 * Fragments of one message, empty ones included. Our peers never fragment, but RFC 6455 5.4
 * lets an intermediary re-fragment, so fragments are accepted within bounds: their bytes count
 * against maxMessage (and are copied into one buffer as they come, rather than kept as views
 * that would each pin an arena), and their count is capped here, so a flood of empty
 * continuations cannot keep a message open forever (ws's "limit retained message parts").
 */
export const MAX_FRAGMENTS = 1024;
const EMPTY = Buffer.alloc(0);

interface Head {
  fin: boolean;
  opcode: Opcode;
  /** Masking key as a u32 (0: not masked, or masked with zeros: nothing to undo). */
  mask: number;
  headerLen: number;
  payloadLen: number;
}

/**
 * Parses frames from socket bytes. Two ways to feed it: ReadTarget (the socket reads into
 * nextBuffer(); see onread in node:net) or push() with the chunks of 'data' events.
 * Buffers handed to the sink are never written again by the reader: arenas are only appended
 * to, and a new arena is taken when one is used up, so consumers may keep what they get.
 */
export class FrameReader implements ReadTarget {
  private arena = Buffer.allocUnsafe(ARENA);
  /** Unparsed bytes are arena[start, end). */
  private start = 0;
  private end = 0;
  /** A frame being read into a buffer of its own: its header, payload buffer and fill. */
  private big: Buffer | null = null;
  private bigHead: Head | null = null;
  private bigFilled = 0;
  /** A message not yet finished (fin = 0 seen): its frames so far and their bytes, joined. */
  private fragmentCount = 0;
  private joined = EMPTY;
  private fragmentBytes = 0;
  private fragmentBinary = true;
  private failed = false;
  /** Bytes taken in so far: the frame timeout compares it between its ticks. */
  bytesIn = 0;
  /** The incomplete frame at arena[start, end) is known to end inside this arena. */
  private tailFits = false;

  constructor(
    private readonly sink: FrameSink,
    /** True on the server: client frames must be masked; false on the client: must not be. */
    private readonly masked: boolean,
    private readonly maxMessage: number,
    /** Where buffers of frames too big for the arena come from; the sink gives them back. */
    private readonly pool?: BufferPool,
  ) {}

  nextBuffer(): Buffer {
    if (this.big) {
      if (this.bigFilled === this.big.length) this.growBig();
      return this.big.subarray(this.bigFilled);
    }
    // Little room left: a frame known to end in this arena reads on into it; otherwise (only a
    // partial header, at most 13 bytes, or nothing pending) the next reads go to a new arena.
    if (this.arena.length - this.end < MIN_READ && !this.tailFits) this.newArena(0);
    return this.arena.subarray(this.end);
  }

  filled(n: number): void {
    this.bytesIn += n;
    this.fill(n);
  }

  /** `n` bytes are in nextBuffer(): parses what they complete. */
  private fill(n: number): void {
    if (this.failed) return;
    if (this.big) {
      this.bigFilled += n;
      if (this.bigFilled === this.bigHead!.payloadLen) this.finishBig();
      return;
    }
    this.end += n;
    this.start = this.parse(this.arena, this.start, this.end);
    if (!this.failed) this.holdTail();
  }

  /** Bytes of a 'data' event. Complete frames are handed over as views of `chunk`. */
  push(chunk: Buffer): void {
    this.bytesIn += chunk.length;
    let off = 0;
    while (off < chunk.length && !this.failed) {
      if (!this.big && this.start === this.end) {
        // Nothing pending: parse straight from the chunk, then keep only its incomplete tail.
        off = this.parse(chunk, off, chunk.length);
        if (off === chunk.length || this.failed) return;
        const head = this.readHead(chunk, off, chunk.length);
        if (this.failed) return;
        if (head && head.payloadLen >= OWN_BUFFER_AT) {
          this.startBig(head, chunk, off + head.headerLen, chunk.length);
          return;
        }
      }
      const dst = this.nextBuffer();
      const k = Math.min(dst.length, chunk.length - off);
      chunk.copy(dst, 0, off, off + k);
      off += k;
      this.fill(k);
    }
  }

  /** Parses complete frames in buf[pos, end); returns where the first incomplete one starts. */
  private parse(buf: Buffer, pos: number, end: number): number {
    while (pos < end && !this.failed) {
      const head = this.readHead(buf, pos, end);
      if (!head) return pos;
      const frameEnd = pos + head.headerLen + head.payloadLen;
      if (frameEnd > end) return pos;
      this.frame(head, buf.subarray(pos + head.headerLen, frameEnd));
      pos = frameEnd;
    }
    return pos;
  }

  /** The header at buf[pos]; null when not all of it is there yet. Checks every rule. */
  private readHead(buf: Buffer, pos: number, end: number): Head | null {
    if (end - pos < 2) return null;
    const b0 = buf[pos]!;
    const b1 = buf[pos + 1]!;
    const fin = (b0 & 0x80) !== 0;
    const opcode = (b0 & 0x0f) as Opcode;
    const isMasked = (b1 & 0x80) !== 0;
    let len = b1 & 0x7f;
    const headerLen = 2 + (len === 126 ? 2 : len === 127 ? 8 : 0) + (isMasked ? 4 : 0);
    if ((b0 & 0x70) !== 0) return this.fail(WS_CLOSE.protocol, 'reserved bits set (no extension was negotiated)');
    if (opcode > Opcode.Binary && opcode < Opcode.Close || opcode > Opcode.Pong) return this.fail(WS_CLOSE.protocol, `unknown opcode ${opcode}`);
    if (opcode >= Opcode.Close && (!fin || len > 125)) return this.fail(WS_CLOSE.protocol, 'control frame fragmented or longer than 125 bytes');
    if (isMasked !== this.masked) return this.fail(WS_CLOSE.protocol, this.masked ? 'client frame not masked' : 'server frame masked');
    // Each rule is checked as soon as its bytes are in (as ws does): a frame can be refused
    // before its payload, or its mask, has arrived.
    if (opcode === Opcode.Continuation) {
      if (this.fragmentCount === 0) return this.fail(WS_CLOSE.protocol, 'continuation frame without a message');
    } else if (opcode < Opcode.Close && this.fragmentCount !== 0) {
      return this.fail(WS_CLOSE.protocol, 'new message inside a fragmented one');
    }
    if (end - pos < headerLen - (isMasked ? 4 : 0)) return null;
    if (len === 126) len = buf.readUInt16BE(pos + 2);
    else if (len === 127) {
      const hi = buf.readUInt32BE(pos + 2);
      if (hi > 0x1fffff) return this.fail(WS_CLOSE.tooBig, 'frame length over 2^53');
      len = hi * 0x1_0000_0000 + buf.readUInt32BE(pos + 6);
    }
    if (opcode < Opcode.Close && len + this.fragmentBytes > this.maxMessage) {
      return this.fail(WS_CLOSE.tooBig, `message larger than ${this.maxMessage} bytes`);
    }
    if (end - pos < headerLen) return null;
    const mask = isMasked ? buf.readUInt32BE(pos + headerLen - 4) : 0;
    return { fin, opcode, mask, headerLen, payloadLen: len };
  }

  /** Keeps the incomplete frame at arena[start, end) readable: own buffer or a new arena. */
  private holdTail(): void {
    this.tailFits = false;
    // Everything parsed: reads go on after `end` (what came before may be held by consumers).
    if (this.start === this.end) return;
    const head = this.readHead(this.arena, this.start, this.end);
    if (this.failed) return;
    if (head && this.start + head.headerLen + head.payloadLen <= this.arena.length) {
      this.tailFits = true;
    } else if (head) {
      if (head.payloadLen >= OWN_BUFFER_AT) {
        this.startBig(head, this.arena, this.start + head.headerLen, this.end);
        this.start = this.end;
      } else {
        this.newArena(head.headerLen + head.payloadLen);
      }
    } else if (!head && this.arena.length - this.start < 14) {
      this.newArena(0);
    }
  }

  /** Moves the unparsed tail to a fresh arena of at least `need` bytes. */
  private newArena(need: number): void {
    const tail = this.end - this.start;
    const next = Buffer.allocUnsafe(Math.max(ARENA, need, tail + MIN_READ));
    this.arena.copy(next, 0, this.start, this.end);
    this.arena = next;
    this.start = 0;
    this.end = tail;
  }

  /** Whether a frame (or a fragmented message) is part-way in: the peer owes us bytes. */
  get partial(): boolean {
    return !this.failed && (this.big !== null || this.start !== this.end || this.fragmentCount !== 0);
  }

  private take(n: number): Buffer {
    return this.pool ? this.pool.take(n) : Buffer.allocUnsafe(n);
  }

  private startBig(head: Head, src: Buffer, from: number, to: number): void {
    this.big = this.take(Math.min(head.payloadLen, Math.max(BIG_FIRST, to - from)));
    this.bigHead = head;
    this.bigFilled = src.copy(this.big, 0, from, to);
    if (this.bigFilled === head.payloadLen) this.finishBig();
  }

  /** The own buffer is full and more of the frame is coming: a larger one, the bytes moved. */
  private growBig(): void {
    const old = this.big!;
    this.big = this.take(Math.min(this.bigHead!.payloadLen, old.length * BIG_GROWTH));
    old.copy(this.big, 0, 0, this.bigFilled);
    this.pool?.release(old);
  }

  private finishBig(): void {
    const big = this.big!;
    const head = this.bigHead!;
    this.big = null;
    this.bigHead = null;
    this.bigFilled = 0;
    this.frame(head, big);
  }

  private frame(head: Head, payload: Buffer): void {
    if (head.mask !== 0) unmask(payload, head.mask);
    const op = head.opcode;
    if (op >= Opcode.Close) {
      this.sink.onControl(op, payload);
      return;
    }
    // readHead has checked the order: a continuation inside a message, a new one outside.
    if (op !== Opcode.Continuation) {
      if (head.fin) return this.sink.onMessage(payload, op === Opcode.Binary);
      this.fragmentBinary = op === Opcode.Binary;
    }
    if (++this.fragmentCount > MAX_FRAGMENTS) return void this.fail(WS_CLOSE.tooBig, `message in more than ${MAX_FRAGMENTS} fragments`);
    this.join(payload);
    if (!head.fin) return;
    const data = this.joined.subarray(0, this.fragmentBytes);
    this.joined = EMPTY;
    this.fragmentBytes = 0;
    this.fragmentCount = 0;
    this.sink.onMessage(data, this.fragmentBinary);
  }

  /** Appends a fragment to the message's buffer (grown by doubling, never past maxMessage). */
  private join(payload: Buffer): void {
    const need = this.fragmentBytes + payload.length;
    if (need > this.joined.length) {
      const next = Buffer.allocUnsafe(Math.min(this.maxMessage, Math.max(need, this.joined.length * 2, 4096)));
      this.joined.copy(next, 0, 0, this.fragmentBytes);
      this.joined = next;
    }
    payload.copy(this.joined, this.fragmentBytes);
    this.fragmentBytes = need;
    this.pool?.release(payload);
  }

  private fail(code: number, reason: string): null {
    if (!this.failed) {
      this.failed = true;
      this.sink.onProtocolError(code, reason);
    }
    return null;
  }
}

