// Detects all-zero payloads, which travel as WRITE_ZEROES instead of data.
const ZEROS = Buffer.alloc(1 << 16);

export function isAllZero(buf: Buffer): boolean {
  for (let off = 0; off < buf.length; off += ZEROS.length) {
    const n = Math.min(ZEROS.length, buf.length - off);
    if (buf.compare(ZEROS, 0, n, off, off + n) !== 0) return false;
  }
  return true;
}
