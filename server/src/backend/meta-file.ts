import { readFile } from 'node:fs/promises';
import { writeFileDurably } from '@wsblk/shared';

/**
 * The membership record of a file export, kept next to its data as `PATH.wsblk-meta` and
 * replaced whole and durably (a crash leaves the old record or the new one).
 */
export class MetaFile {
  constructor(readonly path: string) {}

  static beside(dataPath: string): MetaFile {
    return new MetaFile(`${dataPath}.wsblk-meta`);
  }

  async read(): Promise<Buffer | null> {
    try {
      return await readFile(this.path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }

  write(data: Buffer): Promise<void> {
    return writeFileDurably(this.path, data);
  }
}
