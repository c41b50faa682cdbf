import { open, rename } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Replaces the file at `path` with `data` durably: a temporary file beside it is written and
 * fdatasync'd, renamed over the path, and the directory synced, so a crash leaves the old
 * content or the new, never a torn mix.
 */
export async function writeFileDurably(path: string, data: Uint8Array, mode = 0o600): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  const fh = await open(tmp, 'w', mode);
  try {
    await fh.writeFile(data);
    await fh.datasync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  const dir = await open(dirname(path), 'r');
  try {
    await dir.datasync();
  } finally {
    await dir.close();
  }
}
