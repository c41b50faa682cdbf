import { Command } from 'commander';
import { askControl } from '../daemon/control.js';
import { controlPath, listStates, runDir } from '../daemon/rundir.js';
import { parseUrl, splitCredentials, withPort } from '../transport/url.js';
import { matchDevice } from './devices.js';
import { CliError, EXIT } from './errors.js';

/** One replica change, asked of the device's daemon; prints the device's replicas after it. */
async function change(cmd: 'replica-add' | 'replica-remove', device: string, text: string, json: boolean): Promise<void> {
  let url: string;
  try {
    url = withPort(parseUrl(splitCredentials(text).url));
  } catch (e) {
    throw new CliError((e as Error).message, EXIT.USAGE);
  }
  const dir = runDir();
  const s = matchDevice(listStates(dir), device);
  if (!s) throw new CliError(`no device '${device}' (see \`wsblk list\`)`, EXIT.NO_DEVICE);
  // Adding waits for the new replica's connect; removing for the new membership to be stored.
  const status = await askControl<Record<string, unknown>>(controlPath(dir, s.id), { cmd, url }, 60_000);
  if (json) {
    process.stdout.write(JSON.stringify(status, null, 2) + '\n');
    return;
  }
  const reps = (status.replicas ?? []) as Array<{ url: string; state: string }>;
  process.stdout.write(`${s.id}: epoch ${String(status.epoch)}; ${reps.map((r) => `${r.url} ${r.state}`).join(', ')}\n`);
}

export function replicaCommand(): Command {
  const cmd = new Command('replica')
    .summary('add or remove a replica of a replica-set device')
    .description('Change the replicas of a device connected over a replica set (connect URL1,URL2,...), '
      + 'while it runs. `add` makes a new replica take writes at once, compares it with an in-sync one '
      + 'region by region and copies what differs (rate-limited by the device\'s --resync-rate); it '
      + 'joins the in-sync set when done (`wsblk list` shows the progress). `remove` takes a replica '
      + 'out (the new membership is stored on the others first); the last in-sync replica cannot be '
      + 'removed. Together they move a live device to a new server: add the new one, wait until `wsblk '
      + 'list` shows it in-sync, remove the old one, then stop the old server.');
  cmd.command('add')
    .description('add a replica to DEVICE (an id from `wsblk list`, a device path or socket)')
    .argument('<device>').argument('<url>', 'ws://HOST[:PORT]/EXPORT of the new replica (same size as the set)')
    .option('--json', 'print the device\'s status as JSON')
    .action((device: string, url: string, o: { json?: boolean }) => change('replica-add', device, url, o.json === true));
  cmd.command('remove')
    .description('remove a replica from DEVICE')
    .argument('<device>').argument('<url>', 'the replica\'s URL, as `wsblk list` shows it')
    .option('--json', 'print the device\'s status as JSON')
    .action((device: string, url: string, o: { json?: boolean }) => change('replica-remove', device, url, o.json === true));
  return cmd;
}
