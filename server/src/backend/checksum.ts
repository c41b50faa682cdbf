import { createHash } from 'node:crypto';
import { CHECKSUM_CHUNK, CHECKSUM_DIGEST } from '@wsblk/shared';
import type { Backend, RequestContext } from './backend.js';

/** Bytes read from the backend at a time while hashing (bounds the memory of one CHECKSUM). */
const READ_AT_ONCE = 1 << 20;

/**
 * CHECKSUM: the first CHECKSUM_DIGEST bytes of sha256 of each CHECKSUM_CHUNK of the range
 * (the last one may be short), computed here so replicas are compared without their data
 * crossing the wire (DRBD's csums-alg, md's check).
 */
export async function checksumRange(backend: Backend, ctx: RequestContext, offset: number, length: number): Promise<Buffer> {
  const out = Buffer.allocUnsafe(Math.ceil(length / CHECKSUM_CHUNK) * CHECKSUM_DIGEST);
  let digest = 0;
  for (let at = offset; at < offset + length; ) {
    const n = Math.min(READ_AT_ONCE, offset + length - at);
    const data = await backend.read(ctx, at, n);
    for (let c = 0; c < n; c += CHECKSUM_CHUNK) {
      const h = createHash('sha256').update(data.subarray(c, Math.min(n, c + CHECKSUM_CHUNK))).digest();
      h.copy(out, digest * CHECKSUM_DIGEST, 0, CHECKSUM_DIGEST);
      digest++;
    }
    at += n;
  }
  return out;
}
