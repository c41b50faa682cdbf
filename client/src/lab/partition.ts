// Real partitions on loopback: an nftables table of the run's own (inet wsblk_lab_PID) drops every
// packet to and from a cut server's data port, both ways, so its TCP connections stay open and
// silent as over a cut cable. Needs nft and CAP_NET_ADMIN; without them the runner black-holes.
import { execFile } from 'node:child_process';

const run = (args: string[]): Promise<void> => new Promise((resolve, reject) => {
  execFile('nft', args, { timeout: 10_000 }, (err, _out, stderr) => (err ? reject(new Error(`nft ${args.join(' ')}: ${stderr.trim().split('\n')[0] || err.message}`)) : resolve()));
});

export class NftPartitions {
  private constructor(readonly table: string) {}

  /** The run's table with an empty set of cut ports; undefined when nftables cannot be used here. */
  static async open(): Promise<NftPartitions | undefined> {
    const table = `wsblk_lab_${process.pid}`;
    try {
      await run(['add', 'table', 'inet', table]);
      const p = new NftPartitions(table);
      await run(['add', 'set', 'inet', table, 'ports', '{ type inet_service; }']);
      await run(['add', 'chain', 'inet', table, 'out', '{ type filter hook output priority 0; policy accept; }']);
      await run(['add', 'rule', 'inet', table, 'out', 'ip', 'daddr', '127.0.0.1', 'tcp', 'dport', '@ports', 'drop']);
      await run(['add', 'rule', 'inet', table, 'out', 'ip', 'saddr', '127.0.0.1', 'tcp', 'sport', '@ports', 'drop']);
      return p;
    } catch {
      await run(['delete', 'table', 'inet', table]).catch(() => undefined);
      return undefined;
    }
  }

  /** How a partition is made, for the results. */
  describe(port: number): string {
    return `nftables drop of 127.0.0.1:${port}, both ways (table inet ${this.table})`;
  }

  cut(port: number): Promise<void> {
    return run(['add', 'element', 'inet', this.table, 'ports', `{ ${port} }`]);
  }

  heal(port: number): Promise<void> {
    return run(['delete', 'element', 'inet', this.table, 'ports', `{ ${port} }`]);
  }

  /** Removes the table (every cut healed). */
  close(): Promise<void> {
    return run(['delete', 'table', 'inet', this.table]).catch(() => undefined);
  }
}
