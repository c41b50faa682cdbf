// `wsblk verify`: are these exports identical? Each server hashes its own data (CHECKSUM), so
// no data crosses the wire; the answer is the mismatching ranges and an exit code, like md's
// check and mismatch_cnt.
import { readTokenFile } from '@wsblk/shared';
import { resolve as resolvePath } from 'node:path';
import { Command } from 'commander';
import { compareTargets, type Mismatch } from '../replica/compare.js';
import { ConnectError, RemoteDisk } from '../transport/remote-disk.js';
import { CliError, EXIT } from './errors.js';
import { secondsArg, targetUrlArg } from './options.js';

interface VerifyOptions {
  tokenFile?: string;
  json?: boolean;
  progress?: boolean;
  connectTimeout: number;
  ioTimeout: number;
}

/** One export to verify: its URL without credentials, and the token to open it with. */
interface Export {
  url: string;
  token: string | undefined;
}

export function verifyCommand(): Command {
  return new Command('verify')
    .summary('check that exports hold the same data')
    .description('Compare two or more exports of one size region by region, as md\'s check does: '
      + 'each server computes a checksum per 64 KiB of its own data, so no data crosses the wire. '
      + 'Prints each mismatching range (adjacent 64 KiB chunks merged) and a summary line. '
      + 'Sessions are read-only, so an export can be verified while its writer is attached; '
      + 'chunks written during the run may then show up as mismatches. The token comes from the '
      + 'URL (ws://:TOKEN@HOST/EXPORT), else --token-file, else $WSBLK_TOKEN. '
      + 'Exits 0 when the exports are identical, 1 when any range differs (or the sizes do), '
      + '3 when an export cannot be reached, refuses us or stops answering.')
    .argument('<url...>', 'two or more ws://HOST[:PORT]/EXPORT or wss://... (port 7690 by default)')
    .option('--token-file <file>', 'file whose first line is the bearer token')
    .option('--json', 'print one JSON object: size, exports, identical, mismatches [{offset, length}], mismatchBytes')
    .option('--progress', 'print progress on stderr every second (the default when stderr is a terminal)')
    .option('--connect-timeout <seconds>', 'give up connecting to an export after this long', secondsArg, 30)
    .option('--io-timeout <seconds>', 'give up when an export leaves a checksum unanswered this long (0 = wait forever)', secondsArg, 60)
    .action(async (texts: string[], o: VerifyOptions) => {
      const exports = parseExports(texts, o);
      const disks = await connectAll(exports, o);
      try {
        await verify(exports, disks, o);
      } finally {
        await Promise.all(disks.map((d) => d.close(1_000)));
      }
    });
}

/** The URLs as exports: at least two, none twice (credentials left out of the comparison). */
function parseExports(texts: string[], o: VerifyOptions): Export[] {
  if (texts.length < 2) throw new CliError('verify needs at least two exports to compare', EXIT.USAGE);
  let fallback: string | undefined;
  try {
    fallback = o.tokenFile ? readTokenFile(resolvePath(o.tokenFile)) : process.env.WSBLK_TOKEN || undefined;
  } catch (e) {
    throw new CliError((e as Error).message, EXIT.USAGE);
  }
  const seen = new Set<string>();
  return texts.map((text) => {
    const { url, token } = targetUrlArg(text);
    if (seen.has(url)) throw new CliError(`${url} is given twice: an export compared with itself proves nothing`, EXIT.USAGE);
    seen.add(url);
    return { url, token: token ?? fallback };
  });
}

async function connectAll(exports: Export[], o: VerifyOptions): Promise<RemoteDisk[]> {
  const results = await Promise.allSettled(exports.map((e) => RemoteDisk.connect({
    url: e.url, ...(e.token ? { token: e.token } : {}), readOnly: true,
    connectTimeoutMs: o.connectTimeout * 1000, ioTimeoutMs: o.ioTimeout * 1000,
  })));
  const disks = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = results.findIndex((r) => r.status === 'rejected');
  if (failed >= 0) {
    await Promise.all(disks.map((d) => d.close(1_000)));
    const err = (results[failed] as PromiseRejectedResult).reason as Error;
    throw new CliError(err instanceof ConnectError ? err.message : `${exports[failed]!.url}: ${err.message}`, err instanceof ConnectError ? EXIT.CONNECT : EXIT.FAILURE);
  }
  return disks;
}

async function verify(exports: Export[], disks: RemoteDisk[], o: VerifyOptions): Promise<void> {
  const size = disks[0]!.info.size;
  const other = disks.findIndex((d) => d.info.size !== size);
  if (other >= 0) {
    throw new CliError(`the exports differ in size: ${exports[0]!.url} has ${sizeText(size)}, `
      + `${exports[other]!.url} has ${sizeText(disks[other]!.info.size)}`, EXIT.FAILURE);
  }
  let done = 0;
  const showProgress = o.progress === true || process.stderr.isTTY === true;
  const ticker = showProgress
    ? setInterval(() => process.stderr.write(`wsblk: verify: ${percent(done, size)} (${humanSize(done)} of ${humanSize(size)})\n`), 1_000)
    : undefined;
  let mismatches: Mismatch[];
  try {
    mismatches = await compareTargets(disks, (p) => { done = p.done; });
  } catch (e) {
    // An export that stopped answering (or cannot compute checksums) leaves the question open.
    throw new CliError(`verify stopped at ${done} of ${size} bytes: ${(e as Error).message}`, EXIT.CONNECT);
  } finally {
    if (ticker) clearInterval(ticker);
  }
  const bytes = mismatches.reduce((n, m) => n + m.length, 0);
  if (o.json) {
    const out = { size, exports: exports.map((e) => e.url), identical: mismatches.length === 0, mismatches, mismatchBytes: bytes };
    process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  } else {
    for (const m of mismatches) process.stdout.write(`mismatch: ${m.offset}+${m.length} (at ${humanSize(m.offset)}, ${humanSize(m.length)})\n`);
    process.stdout.write(`verified ${size} bytes across ${disks.length} exports: `
      + `${mismatches.length} mismatching range${mismatches.length === 1 ? '' : 's'} (${bytes} bytes)\n`);
  }
  if (mismatches.length > 0) process.exitCode = EXIT.FAILURE;
}

function sizeText(bytes: number): string {
  return `${bytes} bytes (${humanSize(bytes)})`;
}

function percent(done: number, size: number): string {
  return `${size === 0 ? 100 : Math.floor((done / size) * 100)}%`;
}

/** 65536 -> "64 KiB", 1610612736 -> "1.5 GiB": for a person; the exact figure is printed beside it. */
export function humanSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return `${i === 0 ? value : Number(value.toFixed(2))} ${units[i]}`;
}
