import { Command } from 'commander';
import { collectDevices } from './devices.js';

export function listCommand(): Command {
  return new Command('list')
    .summary('list connected devices')
    .description('List the devices connected on this host, with their daemon\'s live state: '
      + 'connected, reconnecting, dead (daemon gone: disconnect or recover it), unresponsive.')
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
      for (const row of cells) process.stdout.write(line(row));
    });
}
