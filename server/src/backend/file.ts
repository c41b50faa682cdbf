import * as fs from 'node:fs';
import { FALLOC, errnoCode, fallocate, systemError } from '@wsblk/native';
import type { Backend, BackendInfo, RequestContext } from './backend.js';
import { MetaFile } from './meta-file.js';

const ZERO_CHUNK = Buffer.alloc(1 << 20);

function pread(fd: number, buf: Buffer, pos: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let done = 0;
    const step = () =>
      fs.read(fd, buf, done, buf.length - done, pos + done, (err, n) => {
        if (err) return reject(err);
        // A short read past EOF cannot happen inside the export (the file is sized); zero-fill.
        if (n === 0) { buf.fill(0, done); return resolve(); }
        done += n;
        if (done < buf.length) step(); else resolve();
      });
    step();
  });
}

function pwrite(fd: number, buf: Buffer, pos: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let done = 0;
    const step = () =>
      fs.write(fd, buf, done, buf.length - done, pos + done, (err, n) => {
        if (err) return reject(err);
        done += n;
        if (done < buf.length) step(); else resolve();
      });
    step();
  });
}

function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

/** A failed system call as Node reports one (code, errno, syscall): statusOfError maps it. */
function errnoError(errno: number, syscall: string): NodeJS.ErrnoException {
  return systemError(errnoCode(errno), errno, `${syscall}: ${errnoCode(errno)}`, syscall);
}

export interface FileBackendOptions {
  /** Size for a file that does not exist yet; for an existing file it must match if given. */
  size?: number;
  readOnly?: boolean;
  blockSize?: number;
}

/**
 * A regular file. Created sparse when absent. Positional reads and writes on the libuv pool;
 * FUA writes go through a second descriptor opened O_DSYNC; FLUSH is fdatasync; DISCARD and
 * WRITE_ZEROES punch holes or zero ranges with fallocate, else write zeroes.
 */
export class FileBackend implements Backend {
  readonly description: string;
  private canPunch = true;
  private canZeroRange = true;

  private constructor(
    readonly info: BackendInfo,
    private readonly path: string,
    private readonly fd: number,
    private readonly syncFd: number,
  ) {
    this.description = `file:${path}`;
  }

  static async open(path: string, opts: FileBackendOptions = {}): Promise<FileBackend> {
    const blockSize = opts.blockSize ?? 512;
    const readOnly = opts.readOnly ?? false;
    let st: fs.Stats | undefined;
    try {
      st = await fs.promises.stat(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    if (st && !st.isFile()) throw new Error(`${path} is not a regular file`);
    if (!st) {
      if (opts.size === undefined) throw new Error(`${path} does not exist and no size was given (add ,size=SIZE)`);
      if (readOnly) throw new Error(`${path} does not exist and the export is read-only`);
    } else if (opts.size !== undefined && st.size !== opts.size) {
      throw new Error(`${path} is ${st.size} bytes but the export says size=${opts.size}; drop size= to use the file as it is`);
    }
    const size = st ? st.size : opts.size!;
    if (size === 0) throw new Error(`${path} is empty: an export needs a size`);
    if (size % blockSize !== 0) throw new Error(`${path}: size ${size} is not a multiple of the block size ${blockSize}`);
    const flags = readOnly ? fs.constants.O_RDONLY : fs.constants.O_RDWR | fs.constants.O_CREAT;
    const fd = fs.openSync(path, flags, 0o644);
    try {
      if (!st) fs.ftruncateSync(fd, size);
      const syncFd = readOnly ? fd : fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_DSYNC);
      return new FileBackend(
        { size, blockSize, readOnly, flush: !readOnly, fua: !readOnly, discard: !readOnly, writeZeroes: !readOnly },
        path, fd, syncFd,
      );
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  async read(_ctx: RequestContext, offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    await pread(this.fd, buf, offset);
    return buf;
  }

  write(_ctx: RequestContext, offset: number, data: Buffer, fua: boolean): Promise<void> {
    return pwrite(fua ? this.syncFd : this.fd, data, offset);
  }

  flush(_ctx: RequestContext): Promise<void> {
    return fdatasync(this.fd);
  }

  async discard(_ctx: RequestContext, offset: number, length: number): Promise<void> {
    if (await this.punch(offset, length)) return;
    await this.zeroRange(offset, length, false);
  }

  async writeZeroes(_ctx: RequestContext, offset: number, length: number, noUnmap: boolean, fua: boolean): Promise<void> {
    if (noUnmap || !(await this.punch(offset, length))) await this.zeroRange(offset, length, false);
    if (fua) await fdatasync(this.fd);
  }

  readMeta(): Promise<Buffer | null> {
    return MetaFile.beside(this.path).read();
  }

  writeMeta(data: Buffer): Promise<void> {
    return MetaFile.beside(this.path).write(data);
  }

  async close(): Promise<void> {
    if (!this.info.readOnly) {
      await fdatasync(this.fd);
      fs.closeSync(this.syncFd);
    }
    fs.closeSync(this.fd);
  }

  private async punch(offset: number, length: number): Promise<boolean> {
    if (!this.canPunch) return false;
    const err = await fallocate(this.fd, FALLOC.PUNCH_HOLE | FALLOC.KEEP_SIZE, offset, length);
    if (err === 0) return true;
    if (err === 95 /* EOPNOTSUPP */) { this.canPunch = false; return false; }
    throw errnoError(err, 'fallocate(PUNCH_HOLE)');
  }

  private async zeroRange(offset: number, length: number, _fua: boolean): Promise<void> {
    if (this.canZeroRange) {
      const err = await fallocate(this.fd, FALLOC.ZERO_RANGE | FALLOC.KEEP_SIZE, offset, length);
      if (err === 0) return;
      if (err !== 95) throw errnoError(err, 'fallocate(ZERO_RANGE)');
      this.canZeroRange = false;
    }
    for (let done = 0; done < length; done += ZERO_CHUNK.length) {
      const n = Math.min(ZERO_CHUNK.length, length - done);
      await pwrite(this.fd, ZERO_CHUNK.subarray(0, n), offset + done);
    }
  }
}
