import { CHECKSUM_CHUNK, CHECKSUM_DIGEST, Errno, LIMITS, Op, errnoName } from '@wsblk/shared';
import type { BlockTarget } from '../target.js';

export interface Mismatch {
  offset: number;
  length: number;
}

/** One CHECKSUM request on a target: a digest per 64 KiB of [offset, offset + length). */
export function checksumOf(target: BlockTarget, offset: number, length: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    target.submit({ op: Op.Checksum, offset, length, flags: 0 }, (status, data) => {
      const want = Math.ceil(length / CHECKSUM_CHUNK) * CHECKSUM_DIGEST;
      if (status !== 0) return reject(new Error(status === Errno.ENOTSUP ? 'the server cannot compute checksums (upgrade it)' : `checksum of ${offset}+${length} failed: ${errnoName(status)}`));
      if (!data || data.length !== want) return reject(new Error(`checksum of ${offset}+${length}: ${data?.length ?? 0} bytes of digests, expected ${want}`));
      resolve(Buffer.from(data));
    });
  });
}

export interface CompareProgress {
  done: number;
  size: number;
}

/**
 * Compares targets of one size region by region with checksums computed by their servers (no
 * data crosses the wire), like md's check. Returns the ranges where any target differs from the
 * first, adjacent 64 KiB chunks merged.
 */
export async function compareTargets(
  targets: readonly BlockTarget[],
  onProgress?: (p: CompareProgress) => void,
  step = 16 << 20,
): Promise<Mismatch[]> {
  const size = targets[0]!.info.size;
  for (const t of targets) if (t.info.size !== size) throw new Error(`the exports differ in size (${size} and ${t.info.size} bytes)`);
  const span = Math.min(step, LIMITS.maxChecksumBytes);
  const out: Mismatch[] = [];
  for (let offset = 0; offset < size; offset += span) {
    const length = Math.min(span, size - offset);
    const sums = await Promise.all(targets.map((t) => checksumOf(t, offset, length)));
    const first = sums[0]!;
    for (let c = 0; c * CHECKSUM_DIGEST < first.length; c++) {
      const at = c * CHECKSUM_DIGEST;
      const same = sums.every((s) => s.compare(first, at, at + CHECKSUM_DIGEST, at, at + CHECKSUM_DIGEST) === 0);
      if (same) continue;
      const start = offset + c * CHECKSUM_CHUNK;
      const len = Math.min(CHECKSUM_CHUNK, size - start);
      const last = out[out.length - 1];
      if (last && last.offset + last.length === start) last.length += len;
      else out.push({ offset: start, length: len });
    }
    onProgress?.({ done: offset + length, size });
  }
  return out;
}
