// WebSocket frames built and read by hand (RFC 6455 5.2), for tests that play a peer byte by byte.

export interface FrameSpec {
  opcode: number;
  payload?: Buffer;
  fin?: boolean;
  /** Masking key: 4 bytes, a u32, or null/undefined for an unmasked frame. */
  mask?: Buffer | number | null;
  /** RSV1..3 as a 3-bit value (4 = RSV1). */
  rsv?: number;
}

/** Encodes one frame: 7-bit, 16-bit or 64-bit length as RFC 6455 says, masked if a key is given. */
export function encodeFrame({ opcode, payload = Buffer.alloc(0), fin = true, mask = null, rsv = 0 }: FrameSpec): Buffer {
  const len = payload.length;
  const lenBytes = len < 126 ? 0 : len < 65536 ? 2 : 8;
  let key: Buffer | null = null;
  if (typeof mask === 'number') {
    key = Buffer.alloc(4);
    key.writeUInt32BE(mask >>> 0, 0);
  } else if (mask) {
    key = mask;
  }
  const hl = 2 + lenBytes + (key ? 4 : 0);
  const out = Buffer.alloc(hl + len);
  out[0] = (fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f);
  out[1] = (key ? 0x80 : 0) | (lenBytes === 0 ? len : lenBytes === 2 ? 126 : 127);
  if (lenBytes === 2) out.writeUInt16BE(len, 2);
  else if (lenBytes === 8) out.writeBigUInt64BE(BigInt(len), 2);
  if (key) {
    key.copy(out, 2 + lenBytes);
    for (let i = 0; i < len; i++) out[hl + i] = payload[i]! ^ key[i & 3]!;
  } else {
    payload.copy(out, hl);
  }
  return out;
}

/** A frame header alone with a 64-bit length (for lengths no test could allocate). */
export function header64(opcode: number, len: bigint, masked: boolean): Buffer {
  const out = Buffer.alloc(10 + (masked ? 4 : 0));
  out[0] = 0x80 | opcode;
  out[1] = (masked ? 0x80 : 0) | 127;
  out.writeBigUInt64BE(len, 2);
  if (masked) out.writeUInt32BE(0x11223344, 10);
  return out;
}

export interface WireFrame {
  opcode: number;
  fin: boolean;
  /** The masking key as sent, or null. */
  key: Buffer | null;
  /** The payload, unmasked. */
  payload: Buffer;
}

/** The complete frames at the start of a byte stream, and how many bytes they took. */
export function readFrames(stream: Buffer): { frames: WireFrame[]; used: number } {
  const frames: WireFrame[] = [];
  let pos = 0;
  while (pos + 2 <= stream.length) {
    const masked = (stream[pos + 1]! & 0x80) !== 0;
    let len = stream[pos + 1]! & 0x7f;
    let hl = 2;
    if (len === 126) {
      if (pos + 4 > stream.length) break;
      len = stream.readUInt16BE(pos + 2);
      hl = 4;
    } else if (len === 127) {
      if (pos + 10 > stream.length) break;
      len = Number(stream.readBigUInt64BE(pos + 2));
      hl = 10;
    }
    const key = masked ? Buffer.from(stream.subarray(pos + hl, pos + hl + 4)) : null;
    if (masked) hl += 4;
    if (pos + hl + len > stream.length) break;
    const payload = Buffer.from(stream.subarray(pos + hl, pos + hl + len));
    if (key) for (let i = 0; i < len; i++) payload[i] = payload[i]! ^ key[i & 3]!;
    frames.push({ opcode: stream[pos]! & 0x0f, fin: (stream[pos]! & 0x80) !== 0, key, payload });
    pos += hl + len;
  }
  return { frames, used: pos };
}
