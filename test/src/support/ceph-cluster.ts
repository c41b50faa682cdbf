// A Ceph micro cluster (one monitor, one memstore OSD, auth off, pool `rbd`) for one test file,
// started by test/ceph/micro-cluster.sh on first use and stopped when the file's tests end.
// Under CI=true missing Ceph packages fail the test; elsewhere the test is skipped.
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, type TestContext } from 'node:test';

const SCRIPT = fileURLToPath(new URL('../../ceph/micro-cluster.sh', import.meta.url));
const TOOLS = ['ceph-mon', 'ceph-osd', 'ceph', 'rbd', 'monmaptool'];

export interface Cluster {
  /** The ceph.conf that clients (rbd, wsblk's conf=) use. */
  conf: string;
  /** Seconds the cluster took to start. */
  startSeconds: number;
  /** Runs the `rbd` CLI against the cluster; rejects with its stderr on failure. */
  rbd(args: string[]): Promise<string>;
  /** Runs the `ceph` CLI against the cluster. */
  ceph(args: string[]): Promise<string>;
}

let started: Promise<Cluster> | undefined;
let dir: string | undefined;

function stop(): void {
  if (!dir) return;
  try { execFileSync(SCRIPT, ['stop', dir], { stdio: 'ignore' }); } catch { /* already gone */ }
  rmSync(dir, { recursive: true, force: true });
  dir = undefined;
}

function missingTools(): string[] {
  return TOOLS.filter((tool) => {
    try { execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }); return false; } catch { return true; }
  });
}

function cli(tool: string, conf: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(tool, ['--conf', conf, ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${tool} ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

/**
 * The file's cluster, started on first call; null when Ceph is missing and the test was skipped.
 */
export async function cephCluster(t: TestContext): Promise<Cluster | null> {
  const missing = missingTools();
  if (missing.length > 0) {
    const reason = `Ceph is not installed (missing ${missing.join(', ')}; Debian: ceph-mon ceph-osd ceph-common)`;
    if (process.env.CI === 'true') throw new Error(`${reason}: required when CI=true`);
    t.skip(reason);
    return null;
  }
  started ??= new Promise<Cluster>((resolve, reject) => {
    dir = mkdtempSync(join(tmpdir(), 'wsblk-ceph-'));
    const conf = join(dir, 'ceph.conf');
    const t0 = Date.now();
    execFile(SCRIPT, ['start', dir], { timeout: 120_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`micro cluster did not start: ${stderr.trim().slice(-2000) || err.message}`));
      resolve({
        conf,
        startSeconds: (Date.now() - t0) / 1000,
        rbd: (args) => cli('rbd', conf, args),
        ceph: (args) => cli('ceph', conf, args),
      });
    });
  });
  return started;
}

after(stop);
process.on('exit', stop);
