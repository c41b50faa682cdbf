// The verdict's three checks, each a LabCheck for the report: fio's own verify, the replicas
// compared by checksum once the device is disconnected (what `wsblk verify` does), and the
// history of our acknowledged writes read back.
import { compareTargets } from '../replica/compare.js';
import { RemoteDisk } from '../transport/remote-disk.js';
import type { HistoryResult } from './history.js';
import type { LabCheck } from './results.js';
import type { LabServer } from './servers.js';
import type { FioOutcome } from './workload.js';

export const CHECK_NAMES = { fio: 'fio verify', compare: 'replica compare', history: 'acknowledged-write history' } as const;

const MiB = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MiB`;

export function fioCheck(o: FioOutcome, verifying: boolean): LabCheck {
  const s = o.summary;
  if (!s) return { name: CHECK_NAMES.fio, ok: false, detail: `fio gave no result (exit ${o.code ?? 'killed'}):\n${o.tail.trim().split('\n').slice(-8).join('\n')}` };
  const ok = o.code === 0 && s.errors === 0;
  const what = `fio exit ${o.code ?? 'killed'}, ${s.errors} error${s.errors === 1 ? '' : 's'}${s.verifyErrors ? ` (verify failed in ${s.verifyErrors} job)` : ''}; `
    + `wrote ${MiB(s.writeBytes)} at ${s.writeIops} IOPS, read ${MiB(s.readBytes)}${verifying ? ' (the written blocks, checked)' : ''}`;
  const tail = ok ? '' : `\n${o.tail.split('\n').filter((l) => /err|verify|bad|fail/i.test(l)).slice(0, 8).join('\n')}`;
  return { name: CHECK_NAMES.fio, ok, detail: what + tail };
}

/** Compares every replica with the first, by checksums over read-only sessions. */
export async function compareCheck(servers: LabServer[]): Promise<LabCheck> {
  const disks: RemoteDisk[] = [];
  try {
    for (const s of servers) {
      disks.push(await RemoteDisk.connect({ url: s.url, token: s.token, readOnly: true, connectTimeoutMs: 10_000, ioTimeoutMs: 60_000 }));
    }
    const lines: string[] = [];
    let ok = true;
    for (let i = 1; i < disks.length; i++) {
      const m = await compareTargets([disks[0]!, disks[i]!]);
      if (m.length === 0) continue;
      ok = false;
      const bytes = m.reduce((n, x) => n + x.length, 0);
      lines.push(`${servers[i]!.name} differs from ${servers[0]!.name} in ${m.length} range${m.length === 1 ? '' : 's'} (${bytes} bytes), first at offset ${m[0]!.offset}+${m[0]!.length}`);
    }
    const size = disks[0]!.info.size;
    return { name: CHECK_NAMES.compare, ok, detail: ok ? `${servers.map((s) => s.name).join(', ')}: identical across ${size} bytes (${MiB(size)})` : lines.join('\n') };
  } catch (e) {
    return { name: CHECK_NAMES.compare, ok: false, detail: `could not compare the replicas: ${(e as Error).message}` };
  } finally {
    await Promise.all(disks.map((d) => d.close(1_000)));
  }
}

export function historyCheck(h: HistoryResult, region: { offset: number; bytes: number }): LabCheck {
  const ok = !h.error && h.mismatches.length === 0 && h.acknowledged > 0;
  const lines = [`${h.acknowledged} writes acknowledged, ${h.failed} failed; ${h.blocksChecked} blocks read back, `
    + `${h.mismatches.length} mismatch${h.mismatches.length === 1 ? '' : 'es'} (region ${region.offset}+${region.bytes}, beside fio)`];
  if (h.acknowledged === 0 && !h.error) lines.push('no write was acknowledged: nothing was checked');
  if (h.error) lines.push(h.error);
  lines.push(...h.mismatches.slice(0, 8));
  if (h.mismatches.length > 8) lines.push(`... and ${h.mismatches.length - 8} more`);
  return { name: CHECK_NAMES.history, ok, detail: lines.join('\n') };
}
