// `wsblk connect --foreground --nbd SOCKET` as a child process, for tests that run NBD tools
// (fio's nbd engine, nbdcopy) over the whole path.
import type { TestContext } from 'node:test';
import { WSBLK, sleep, startProc, stopProc, type Proc } from './procs.js';

/** Starts the daemon; resolves with its NBD URI once it printed it. Stopped at the end of the test. */
export async function startNbdDaemon(t: TestContext, url: string, sock: string, runDir: string, extra: string[] = []): Promise<{ proc: Proc; uri: string }> {
  const proc = startProc(process.execPath, [WSBLK, 'connect', url, '--nbd', sock, '--foreground', ...extra], { WSBLK_RUN_DIR: runDir });
  t.after(() => stopProc(proc));
  const deadline = Date.now() + 20_000;
  while (!proc.output().includes('nbd+unix://')) {
    if (Date.now() > deadline || proc.child.exitCode !== null) throw new Error(`daemon did not become ready:\n${proc.output()}`);
    await sleep(50);
  }
  return { proc, uri: `nbd+unix:///?socket=${sock}` };
}
