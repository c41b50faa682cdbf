// Node helper for tests that need a real kernel with ublk_drv: runs a command in
// the qemu guest through test/vm/run.sh. Plain ESM, no build step; types in vm.d.mts.
//
//   import { vmAvailable, runInVm } from '../../vm/vm.mjs';
//   test('ublk', { skip: !vmAvailable() && 'no VM (run test/vm/prepare.sh)' }, async () => {
//     const r = await runInVm(['node', 'client/dist/cli/main.js', '--help']);
//     assert.equal(r.code, 0, r.stderr);
//   });
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
export const runScript = join(here, 'run.sh');
export const prepareScript = join(here, 'prepare.sh');

/** Exit status run.sh uses when the guest was killed at the timeout. */
export const EXIT_TIMEOUT = 124;
/** Exit status run.sh uses when the harness itself failed (guest died, bad setup). */
export const EXIT_HARNESS = 125;

const WARN_RE = /WARNING:|BUG:|Oops|Call Trace|general protection fault|Kernel panic|blocked for more than/;

/** The cache directory prepare.sh fills (WSBLK_VM_CACHE or /var/cache/wsblk-vm). */
export function vmCacheDir() {
  return process.env.WSBLK_VM_CACHE || '/var/cache/wsblk-vm';
}

function onPath(cmd) {
  return (process.env.PATH || '').split(delimiter).some((d) => d && existsSync(join(d, cmd)));
}

/**
 * True when prepare.sh has succeeded (kernel and initramfs are in the cache) and
 * qemu is installed. Synchronous and cheap; it does not boot anything.
 * WSBLK_VM=0 in the environment forces false (to skip the VM tests).
 */
export function vmAvailable() {
  if (process.env.WSBLK_VM === '0') return false;
  if (process.platform !== 'linux' || !onPath('qemu-system-x86_64')) return false;
  const envFile = join(vmCacheDir(), 'vm.env');
  if (!existsSync(envFile)) return false;
  const vars = Object.fromEntries(
    readFileSync(envFile, 'utf8')
      .split('\n')
      .map((l) => /^(\w+)='(.*)'$/.exec(l))
      .filter(Boolean)
      .map((m) => [m[1], m[2]]),
  );
  return Boolean(vars.WSBLK_VM_KERNEL && existsSync(vars.WSBLK_VM_KERNEL) && vars.WSBLK_VM_INITRD && existsSync(vars.WSBLK_VM_INITRD));
}

/** Runs prepare.sh (downloads on first use; quick afterwards). Resolves to true on success. */
export function vmPrepare({ quiet = true } = {}) {
  return new Promise((resolve) => {
    const p = spawn('bash', [prepareScript, ...(quiet ? ['--quiet'] : [])], { stdio: ['ignore', 'inherit', 'inherit'] });
    p.on('error', () => resolve(false));
    p.on('close', (code) => resolve(code === 0));
  });
}

/** Synchronous variant of vmPrepare, for top-level skip decisions. */
export function vmPrepareSync({ quiet = true } = {}) {
  const r = spawnSync('bash', [prepareScript, ...(quiet ? ['--quiet'] : [])], { stdio: ['ignore', 'inherit', 'inherit'] });
  return r.status === 0;
}

/**
 * Runs `command` (argv array) as root in the guest, chrooted into this machine's
 * root (read-only), cwd = opts.cwd or process.cwd(). Writable in the guest: /tmp
 * (fresh tmpfs) and the scratch dir (env WSBLK_VM_OUT there, same path on the host).
 *
 * opts: timeoutSec (default 900; boot included), env (extra variables for the
 * command; WSBLK_* and CI of this process pass through anyway), scratchDir (use and
 * keep this dir), keep (keep the temporary scratch dir), mem, smp, cwd,
 * echo (also copy the guest's output to this process's stdout/stderr as it comes),
 * signal (AbortSignal: kills the guest).
 *
 * Resolves to { code, stdout, stderr, dmesg, kernelWarnings, timedOut, scratchDir }.
 * code is the command's exit status, 124 on timeout, 125 if the harness failed.
 * dmesg is the guest's full kernel log (empty if the guest died early: then see
 * <scratchDir>/.vm/console.log, which is kept). The scratch dir is kept (scratchDir)
 * when given, with keep, on timeout, harness failure or kernel warnings; else null.
 */
export function runInVm(command, opts = {}) {
  if (!Array.isArray(command) || command.length === 0) throw new TypeError('runInVm: command must be a non-empty array');
  const timeoutSec = Math.max(1, Math.ceil(opts.timeoutSec ?? 900));
  const own = !opts.scratchDir;
  const scratch = opts.scratchDir ?? mkdtempSync(join(tmpdir(), 'wsblk-vm-'));
  const args = [runScript, '--quiet', '--timeout', String(timeoutSec), '--scratch', scratch];
  if (opts.mem) args.push('--mem', String(opts.mem));
  if (opts.smp) args.push('--smp', String(opts.smp));
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v !== undefined) args.push('--env', `${k}=${v}`);
  }
  args.push('--', ...command.map(String));

  return new Promise((resolve, reject) => {
    const child = spawn('bash', args, { cwd: opts.cwd ?? process.cwd(), stdio: ['ignore', 'pipe', 'pipe'] });
    const out = [];
    const err = [];
    child.stdout.on('data', (b) => { out.push(b); if (opts.echo) process.stdout.write(b); });
    child.stderr.on('data', (b) => { err.push(b); if (opts.echo) process.stderr.write(b); });
    // run.sh enforces the timeout itself; this is a backstop if run.sh gets stuck.
    const guard = setTimeout(() => child.kill('SIGTERM'), (timeoutSec + 60) * 1000);
    const onAbort = () => child.kill('SIGTERM');
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (e) => { clearTimeout(guard); reject(e); });
    child.on('close', (code, sig) => {
      clearTimeout(guard);
      opts.signal?.removeEventListener('abort', onAbort);
      let dmesg = '';
      try { dmesg = readFileSync(join(scratch, '.vm', 'dmesg.log'), 'utf8'); } catch {}
      let console_ = '';
      try { console_ = readFileSync(join(scratch, '.vm', 'console.log'), 'utf8'); } catch {}
      const status = code ?? (sig ? 128 + (sig === 'SIGKILL' ? 9 : 15) : EXIT_HARNESS);
      const kernelWarnings = WARN_RE.test(dmesg || console_);
      const keep = !own || opts.keep || kernelWarnings || status === EXIT_TIMEOUT || status === EXIT_HARNESS;
      if (!keep) rmSync(scratch, { recursive: true, force: true });
      resolve({
        code: status,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        dmesg,
        kernelWarnings,
        timedOut: status === EXIT_TIMEOUT,
        scratchDir: keep ? scratch : null,
      });
    });
  });
}
