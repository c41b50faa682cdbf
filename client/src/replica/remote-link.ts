import { Errno, Op, encodeSetRecord, errnoName, parseSetRecord, type SetRecord } from '@wsblk/shared';
import type { IoCallback, IoRequest, DiskInfo } from '../target.js';
import type { RemoteDisk } from '../transport/remote-disk.js';
import { checksumOf } from './compare.js';
import type { ReplicaLink } from './link.js';

/** One request as a promise: status 0 and the data (kept: copied out of a lent buffer), or a rejection naming the errno. */
function ask(disk: RemoteDisk, req: IoRequest, what: string): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    disk.submit(req, (status, data) => {
      if (status !== Errno.OK) return reject(new Error(`${what}: ${errnoName(status)}`));
      resolve(data ? Buffer.from(data) : undefined);
    });
  });
}

/** A replica over a RemoteDisk: the transport to one server, as the ReplicaSet sees it. */
export class RemoteLink implements ReplicaLink {
  constructor(readonly disk: RemoteDisk, readonly id: string) {}

  get info(): DiskInfo {
    return this.disk.info;
  }

  get connected(): boolean {
    return this.disk.connected;
  }

  submit(req: IoRequest, cb: IoCallback): void {
    this.disk.submit(req, cb);
  }

  async readMeta(): Promise<SetRecord | null> {
    if (!this.disk.connected) throw new Error(`${this.id} is not connected`);
    const raw = await ask(this.disk, { op: Op.MetaRead, offset: 0, length: 0, flags: 0 }, 'reading its membership record');
    if (!raw || raw.length === 0) return null;
    try {
      return parseSetRecord(raw);
    } catch (e) {
      throw new Error(`its membership record is damaged: ${(e as Error).message}`);
    }
  }

  async writeMeta(record: SetRecord): Promise<void> {
    const payload = encodeSetRecord(record);
    await ask(this.disk, { op: Op.MetaWrite, offset: 0, length: payload.length, flags: 0, payload }, `storing epoch ${record.epoch}`);
    // Later connections say which epoch they write for: the server fences older ones.
    this.disk.useSet(record.setId, record.epoch);
  }

  checksum(offset: number, length: number): Promise<Buffer> {
    return checksumOf(this.disk, offset, length);
  }

  abandon(status: number): void {
    this.disk.abandon(status);
  }

  onState(fn: (connected: boolean, sessionLost?: boolean) => void): void {
    this.disk.on('connected', (_welcome: unknown, sessionLost: boolean) => fn(true, sessionLost));
    this.disk.on('disconnected', () => fn(false));
  }

  close(): Promise<void> {
    return this.disk.close(5_000);
  }
}
