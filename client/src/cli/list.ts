import { Command } from 'commander';
import { collectDevices } from './devices.js';

export function listCommand(): Command {
  return new Command('list')
    .summary('list connected devices')
    .description('List the devices connected on this host, with their daemon\'s live state: '
      + 'connected, reconnecting, dead (daemon gone: disconnect or recover it), unresponsive. A replica '
      + 'set\'s device lists its set\'s epoch and each replica\'s state under it: in-sync, resyncing '
      + '(with the percent done), ejected (reachable, out of the set until resynced), unreachable. '
      + 'With --json, `replicas: [{url, state, connected, outstanding, resync?, reason?}]` and `epoch`. '
      + 'A device with failover gateways (connect --failover) lists each gateway under it, marking the one '
      + 'it is on; with --json, `gateway` (the one it is on), `failover: [...]` and `failovers` (times it moved).')
    .option('--json', 'print a JSON array (one object per device)')
    .action(async (o: { json?: boolean }) => {
      const rows = (await collectDevices()).map((d) => d.entry);
      if (o.json) {
        process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
        return;
      }
      if (rows.length === 0) {
        process.stdout.write('no devices\n');
        return;
      }
      const cols = ['id', 'kind', 'device', 'url', 'pid', 'state', 'inflight', 'reconnects'] as const;
      const cells = rows.map((r) => cols.map((c) => String(r[c] ?? '-')));
      const widths = cols.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
      const line = (vals: readonly string[]) => vals.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd() + '\n';
      process.stdout.write(line(cols.map((c) => c.toUpperCase())));
      for (const [i, row] of cells.entries()) {
        process.stdout.write(line(row));
        const failover = rows[i]!.failover as string[] | undefined;
        if (failover) {
          for (const g of [rows[i]!.url, ...failover]) process.stdout.write(`  gateway ${g}${g === rows[i]!.gateway ? '  (current)' : ''}\n`);
        }
        const reps = rows[i]!.replicas as Array<{ url: string; state: string; resync?: { percent: number }; reason?: string }> | undefined;
        if (!reps) continue;
        process.stdout.write(`  replica set epoch ${String(rows[i]!.epoch)}, ${String(rows[i]!.inSync)} of ${reps.length} in sync\n`);
        for (const r of reps) {
          const detail = r.state === 'resyncing' && r.resync ? ` ${r.resync.percent}%` : r.reason && r.state !== 'in-sync' ? ` (${r.reason})` : '';
          process.stdout.write(`  ${r.url}  ${r.state}${detail}\n`);
        }
      }
    });
}
