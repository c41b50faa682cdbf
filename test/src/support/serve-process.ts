// `wsblk serve` as a child process with any options, for tests that need the real server
// process (its signals, its RSS, its command line).
import type { TestContext } from 'node:test';
import { WSBLK, freePort, startProc, waitForPort, type Proc } from './procs.js';

export interface ServeProcess {
  proc: Proc;
  port: number;
  pid: number;
  url(name: string): string;
}

/** Starts `wsblk serve --listen 127.0.0.1:PORT ARGS...` (a free port unless given); killed at the end of the test. */
export async function serve(t: TestContext, args: string[], env: NodeJS.ProcessEnv = {}, atPort?: number): Promise<ServeProcess> {
  const port = atPort ?? await freePort();
  const proc = startProc(process.execPath, [WSBLK, 'serve', '--listen', `127.0.0.1:${port}`, ...args], env);
  t.after(() => { proc.child.kill('SIGKILL'); });
  await Promise.race([
    waitForPort(port),
    proc.exited.then((code) => { throw new Error(`server exited (${code}) before listening:\n${proc.output()}`); }),
  ]);
  return { proc, port, pid: proc.child.pid!, url: (name) => `ws://127.0.0.1:${port}/${name}` };
}
