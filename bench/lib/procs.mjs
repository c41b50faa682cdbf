// Child processes of the benchmark: every one is registered, and every one is stopped when the
// bench ends, fails, or is interrupted (SIGINT/SIGTERM/SIGHUP, uncaught error).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** utime + stime of a process, in seconds (null once it is gone). */
export function cpuSecondsOf(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // fields 14 and 15; USER_HZ is 100 on Linux
  } catch {
    return null;
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const live = new Set();
let stopping = false;

/**
 * Spawns `cmd args` with stdout/stderr collected. Returns { child, pid, name, output(), exited }.
 * `exited` resolves to { code, signal }.
 */
export function startProc(name, cmd, args, { env = {}, cwd } = {}) {
  if (stopping) throw new Error(`not starting ${name}: the bench is stopping`);
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => { stdout += d.toString(); });
  child.stderr.on('data', (d) => { stderr += d.toString(); });
  const proc = {
    name, child, pid: child.pid,
    stdout: () => stdout, stderr: () => stderr,
    output: () => stdout + stderr,
    done: false,
    exited: null,
  };
  proc.exited = new Promise((resolve) => {
    child.once('error', (e) => { proc.done = true; live.delete(proc); stderr += `\nspawn error: ${e.message}`; resolve({ code: null, signal: null, error: e }); });
    child.once('exit', (code, signal) => { proc.done = true; live.delete(proc); resolve({ code, signal }); });
  });
  live.add(proc);
  return proc;
}

/** SIGTERM, then SIGKILL after graceMs; resolves once the process is gone. */
export async function stopProc(proc, graceMs = 5000) {
  if (!proc || proc.done) return proc?.exited;
  try { proc.child.kill('SIGTERM'); } catch { /* already gone */ }
  const t = setTimeout(() => { try { proc.child.kill('SIGKILL'); } catch { /* gone */ } }, graceMs);
  const r = await proc.exited;
  clearTimeout(t);
  return r;
}

export async function stopAll(graceMs = 5000) {
  await Promise.all([...live].map((p) => stopProc(p, graceMs)));
}

/** Last resort (process 'exit'): synchronous SIGKILL of whatever is still running. */
function killAllNow() {
  for (const p of live) {
    try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
  }
  live.clear();
}

let cleanupInstalled = false;
/** Stops every child on exit, on SIGINT/SIGTERM/SIGHUP, and on an uncaught error. */
export function installCleanup(onSignal) {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  process.on('exit', killAllNow);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      if (stopping) return;
      stopping = true;
      process.stderr.write(`\nbench: ${sig}: stopping every process it started\n`);
      onSignal?.();
      stopAll(2000).finally(() => process.exit(130));
    });
  }
}

/** Waits until `test()` returns a truthy value, polling; throws `what` after timeoutMs or if proc exits. */
export async function waitFor(what, test, { timeoutMs = 20_000, proc, intervalMs = 50 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await test();
    if (v) return v;
    if (proc?.done) throw new Error(`${proc.name} exited before ${what}:\n${tail(proc.output())}`);
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${proc ? `:\n${tail(proc.output())}` : ''}`);
    await sleep(intervalMs);
  }
}

export function tail(text, lines = 8) {
  return text.trim().split('\n').slice(-lines).join('\n');
}

/** Runs a command to completion; resolves { code, signal, stdout, stderr, timedOut }; stops it after timeoutMs. */
export async function runCommand(name, cmd, args, { timeoutMs = 60_000, env = {} } = {}) {
  const p = startProc(name, cmd, args, { env });
  let timedOut = false;
  const t = setTimeout(() => { timedOut = true; stopProc(p, 2000); }, timeoutMs);
  const r = await p.exited;
  clearTimeout(t);
  return { ...r, stdout: p.stdout(), stderr: p.stderr(), timedOut };
}
