import { rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { writeFileDurably } from '@wsblk/shared';
import { crc32 } from 'node:zlib';

/**
 * The regions written while a replica was out (md's write-intent bitmap, Mayastor's rebuild
 * log): resync copies only these. A region's bit is on disk before any write into it is sent
 * to a replica, so a daemon killed at any point leaves a map that covers every write the
 * absent replica missed; the first write into a region waits for one file write, the rest
 * wait for nothing. Clearing bits (resync done with a region) and the resync position are
 * saved lazily: losing them only means copying a region again.
 *
 * File: a 64-byte header (magic, version, region shift, size, resync position, owner tag,
 * epoch, crc32 of the rest) then the bitmap; replaced whole by rename, so it is old or new, never torn.
 */
const MAGIC = 'WSBLKDM1';
const HEADER = 64;
/** Regions are at least this large; a map never has more than MAX_REGIONS bits. */
const MIN_REGION_SHIFT = 16;
const MAX_REGIONS = 1 << 20;

/** The region size for a disk of `size` bytes: 64 KiB, or larger so the map stays <= 128 KiB. */
export function regionShiftFor(size: number): number {
  let shift = MIN_REGION_SHIFT;
  while (Math.ceil(size / 2 ** shift) > MAX_REGIONS) shift++;
  return shift;
}

export class DirtyMap {
  private readonly bits: Uint8Array;
  readonly regions: number;
  /** Regions set. */
  private dirty = 0;
  /** Where resync goes on (a region index), saved with the map. */
  private resyncAt = 0;
  /**
   * The set's epoch when the map was last saved. A map is trusted at attach only if the set is
   * still at that epoch: every attach bumps the epoch, so writes by another client (which this
   * map never saw) make it stale.
   */
  epoch = 0;
  /** A save is running; `again` asks for one more after it (bits changed meanwhile). */
  private saving: Promise<void> | null = null;
  private again = false;
  private closed = false;

  private constructor(
    readonly path: string,
    readonly size: number,
    readonly regionShift: number,
    /** Names whose map this is (replica set id and replica): a map for another owner is not used. */
    readonly owner: string,
    bits?: Uint8Array,
  ) {
    this.regions = Math.ceil(size / 2 ** regionShift);
    this.bits = bits ?? new Uint8Array(Math.ceil(this.regions / 8));
    if (bits) for (const b of bits) this.dirty += popcount(b);
  }

  /** A new, empty map (saved at once, so its existence records that tracking started). */
  static async create(path: string, size: number, owner: string): Promise<DirtyMap> {
    const m = DirtyMap.fresh(path, size, owner);
    await m.save();
    return m;
  }

  /** A new map in memory; its first mark() (or flush()) saves it. `all`: every region dirty. */
  static fresh(path: string, size: number, owner: string, all = false): DirtyMap {
    const m = new DirtyMap(path, size, regionShiftFor(size), owner);
    if (all) {
      m.bits.fill(0xff);
      const extra = m.bits.length * 8 - m.regions;
      if (extra) m.bits[m.bits.length - 1] = 0xff >> extra;
      m.dirty = m.regions;
    }
    return m;
  }

  /**
   * The map saved at `path`, or null when there is none, or it is damaged or belongs to another
   * owner or disk size: then no map is known and resync must compare checksums.
   */
  static load(path: string, size: number, owner: string): DirtyMap | null {
    let buf: Buffer;
    try {
      buf = readFileSync(path);
    } catch {
      return null;
    }
    if (buf.length < HEADER || buf.toString('latin1', 0, 8) !== MAGIC || buf.readUInt32LE(8) !== 1) return null;
    if (buf.readUInt32LE(60) !== checksum(buf)) return null;
    const shift = buf.readUInt32LE(12);
    const savedSize = Number(buf.readBigUInt64LE(16));
    const tag = buf.subarray(32, 48).toString('latin1');
    if (savedSize !== size || tag !== ownerTag(owner) || shift < MIN_REGION_SHIFT || shift > 52) return null;
    const m = new DirtyMap(path, size, shift, owner, new Uint8Array(buf.subarray(HEADER)));
    if (m.bits.length !== Math.ceil(m.regions / 8)) return null;
    m.resyncAt = Math.min(Number(buf.readBigUInt64LE(24)), m.regions);
    m.epoch = Number(buf.readBigUInt64LE(48));
    return m;
  }

  get dirtyRegions(): number {
    return this.dirty;
  }

  get regionSize(): number {
    return 2 ** this.regionShift;
  }

  /** The region index resync resumes at. */
  get resyncPosition(): number {
    return this.resyncAt;
  }

  /**
   * Marks the regions of [offset, offset + length). Returns null when they were all marked
   * already (nothing to wait for), else a promise that resolves once the map is on disk.
   */
  mark(offset: number, length: number): Promise<void> | null {
    if (length <= 0) return null;
    const first = Math.floor(offset / this.regionSize);
    const last = Math.min(this.regions - 1, Math.floor((offset + length - 1) / this.regionSize));
    let added = false;
    for (let r = first; r <= last; r++) {
      const bit = 1 << (r & 7);
      const b = this.bits[r >> 3]!;
      if (b & bit) continue;
      this.bits[r >> 3] = b | bit;
      this.dirty++;
      added = true;
      // A region behind the resync cursor was copied already: resync must come back for it.
      if (r < this.resyncAt) this.resyncAt = r;
    }
    return added ? this.save() : null;
  }

  isDirty(region: number): boolean {
    return (this.bits[region >> 3]! & (1 << (region & 7))) !== 0;
  }

  /** The first dirty region at or after `from`, or -1. */
  nextDirty(from: number): number {
    for (let r = Math.max(0, from); r < this.regions; r++) {
      const byte = this.bits[r >> 3]!;
      if (byte === 0) {
        r |= 7; // skip the rest of an empty byte
        continue;
      }
      if (byte & (1 << (r & 7))) return r;
    }
    return -1;
  }

  /** Resync copied `region` and moved on to `next`: saved lazily (with the next save). */
  copied(region: number, next: number): void {
    if (this.isDirty(region)) {
      this.bits[region >> 3] = this.bits[region >> 3]! & ~(1 << (region & 7));
      this.dirty--;
    }
    this.resyncAt = Math.max(this.resyncAt, Math.min(next, this.regions));
  }

  /** Saves the map now (bits cleared and the resync position included). */
  flush(): Promise<void> {
    return this.save();
  }

  /** Deletes the map file (the replica is in sync again); the map is unusable after. */
  async remove(): Promise<void> {
    this.closed = true;
    while (this.saving) await this.saving;
    await rm(this.path, { force: true });
  }

  /** Saves the whole map; concurrent calls share one save, plus one more if bits changed. */
  private save(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.saving) {
      this.again = true;
      // Resolves after the save that includes this call's bits.
      return this.saving.then(() => (this.saving ? this.saving : this.save()));
    }
    this.again = false;
    const p = this.write().finally(() => {
      this.saving = null;
      if (this.again && !this.closed) void this.save();
    });
    this.saving = p;
    return p;
  }

  private async write(): Promise<void> {
    const buf = Buffer.alloc(HEADER + this.bits.length);
    buf.write(MAGIC, 0, 'latin1');
    buf.writeUInt32LE(1, 8);
    buf.writeUInt32LE(this.regionShift, 12);
    buf.writeBigUInt64LE(BigInt(this.size), 16);
    buf.writeBigUInt64LE(BigInt(this.resyncAt), 24);
    buf.write(ownerTag(this.owner), 32, 16, 'latin1');
    buf.writeBigUInt64LE(BigInt(this.epoch), 48);
    Buffer.from(this.bits.buffer, this.bits.byteOffset, this.bits.length).copy(buf, HEADER);
    buf.writeUInt32LE(checksum(buf), 60);
    await writeFileDurably(this.path, buf);
  }
}

/** 16 characters that name the owner (a hash: owners are URLs and ids of any length). */
function ownerTag(owner: string): string {
  return (crc32(owner) >>> 0).toString(16).padStart(8, '0') + (crc32(owner + '\0') >>> 0).toString(16).padStart(8, '0');
}

/** crc32 of the header before its checksum field, then of the bitmap. */
function checksum(file: Buffer): number {
  return crc32(file.subarray(HEADER), crc32(file.subarray(0, 60))) >>> 0;
}

function popcount(b: number): number {
  let n = 0;
  for (; b; b &= b - 1) n++;
  return n;
}
