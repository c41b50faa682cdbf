// The Ceph side of the rbd and qemurbd targets: a micro cluster of the bench's own (test/ceph/
// micro-cluster.sh: one monitor, one memstore OSD, pool `rbd`), or an existing one (--ceph-conf),
// and one image per target, all of the same size. The cluster and the images go at the end,
// also on Ctrl-C (its daemons fork away from us, so the bench's process list cannot stop them).
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { versionOf } from './machine.mjs';

const SCRIPT = fileURLToPath(new URL('../../test/ceph/micro-cluster.sh', import.meta.url));
const execFileP = promisify(execFile);

/** The targets that need a Ceph cluster. */
export const CEPH_TARGETS = ['rbd', 'qemurbd'];

/** What is missing to run the Ceph targets (an own cluster unless `ownCluster` is false). */
export function missingForCeph({ ownCluster, targets }) {
  const missing = [];
  if (ownCluster && !['ceph-mon', 'ceph-osd', 'monmaptool', 'ceph'].every((t) => versionOf('sh', ['-c', `command -v ${t}`]))) {
    missing.push('a Ceph micro cluster (Debian packages ceph-mon, ceph-osd, ceph-common), or --ceph-conf FILE');
  }
  if (!versionOf('rbd', ['--version'])) missing.push('the rbd CLI (Debian package ceph-common)');
  if (targets.includes('qemurbd') && !/\brbd\b/.test(versionOf('sh', ['-c', 'qemu-img --help | grep "^Supported formats"']) ?? '')) {
    missing.push("qemu-nbd with qemu's rbd driver (Debian packages qemu-utils, qemu-block-extra)");
  }
  return missing;
}

/** PIDs of the cluster's daemons ({ 'mon.a': pid, 'osd.0': pid }), from the script's pid files. */
function daemonPids(dir) {
  const pids = {};
  for (const f of readdirSync(join(dir, 'run')).filter((n) => n.endsWith('.pid'))) {
    const pid = Number(readFileSync(join(dir, 'run', f), 'utf8').trim());
    if (pid > 0) pids[f.slice(0, -4)] = pid;
  }
  return pids;
}

/**
 * The cluster the Ceph targets use, with one image per target in pool `rbd`. Resolves
 * { conf, pool, images: { key: name }, pids, startSeconds, stop() }; `pids` (own cluster only)
 * lets the bench count the monitor's and OSD's CPU, which both Ceph targets share.
 */
export async function startCeph({ conf: given, targets, size, log }) {
  const pool = 'rbd';
  let dir = null;
  let stopped = false;
  let starting = null;
  const images = Object.fromEntries(targets.map((t) => [t, `wsblk-bench-${t}-${process.pid}`]));
  // Synchronous, so that it also runs from process 'exit' (Ctrl-C, an uncaught error).
  const stopSync = () => {
    if (stopped) return;
    stopped = true;
    if (dir) {
      // Interrupted while the script starts daemons: no more of them, then those it started.
      starting?.kill('SIGKILL');
      try { execFileSync(SCRIPT, ['stop', dir], { stdio: 'ignore' }); } catch { /* already gone */ }
      rmSync(dir, { recursive: true, force: true });
    } else {
      // Someone else's cluster: leave it as we found it.
      for (const name of Object.values(images)) {
        try { execFileSync('rbd', ['--conf', conf, 'rm', '--no-progress', `${pool}/${name}`], { stdio: 'ignore', timeout: 30_000 }); } catch { /* not created */ }
      }
    }
  };
  process.on('exit', stopSync);
  let conf = given;
  const t0 = Date.now();
  try {
    if (!conf) {
      dir = mkdtempSync(join(tmpdir(), 'wsblk-bench-ceph-'));
      log(`starting a Ceph micro cluster in ${dir}`);
      await new Promise((resolve, reject) => {
        starting = execFile(SCRIPT, ['start', dir], { timeout: 120_000 }, (e, _stdout, stderr) => {
          starting = null;
          if (e) reject(new Error(`the Ceph micro cluster did not start: ${(stderr || e.message).trim().split('\n').slice(-4).join(' | ')}`));
          else resolve();
        });
      });
      conf = join(dir, 'ceph.conf');
    }
    for (const name of Object.values(images)) {
      await execFileP('rbd', ['--conf', conf, 'create', '--size', size, `${pool}/${name}`], { timeout: 60_000 }).catch((e) => {
        throw new Error(`rbd create ${pool}/${name}: ${(e.stderr || e.message).trim()}`);
      });
    }
  } catch (e) {
    stopSync();
    throw e;
  }
  const startSeconds = (Date.now() - t0) / 1000;
  log(`Ceph ready in ${startSeconds.toFixed(1)} s (${conf}); images ${Object.values(images).map((n) => `${pool}/${n}`).join(', ')} of ${size}`);
  return { conf, pool, images, pids: dir ? daemonPids(dir) : {}, startSeconds, own: !!dir, stop: stopSync };
}
