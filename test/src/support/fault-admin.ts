// A real `wsblk serve` with its admin listener, and the fault API as calls: the tests of
// fault injection set and clear faults the way an experimenter would.
import type { TestContext } from 'node:test';
import { freePort } from './procs.js';
import { serve, type ServeProcess } from './serve-process.js';

export interface ApiAnswer {
  status: number;
  text: string;
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export interface FaultServer extends ServeProcess {
  /** http://127.0.0.1:PORT of the admin listener. */
  admin: string;
  api(method: string, path: string, body?: unknown, token?: string): Promise<ApiAnswer>;
  /** POST /faults; fails the test unless 200. */
  set(fault: Record<string, unknown>): Promise<any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  /** DELETE /faults/NAME, or every fault. */
  clear(name?: string): Promise<void>;
}

export async function callAdmin(base: string, method: string, path: string, body?: unknown, token?: string): Promise<ApiAnswer> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(base + path, { method, headers, ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }) });
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json };
}

/** `wsblk serve ARGS --admin-listen 127.0.0.1:PORT`; killed at the end of the test. */
export async function serveWithFaults(t: TestContext, args: string[], env: NodeJS.ProcessEnv = {}): Promise<FaultServer> {
  const adminPort = await freePort();
  const s = await serve(t, [...args, '--admin-listen', `127.0.0.1:${adminPort}`], env);
  const admin = `http://127.0.0.1:${adminPort}`;
  const api = (method: string, path: string, body?: unknown, token?: string) => callAdmin(admin, method, path, body, token);
  return {
    ...s, admin, api,
    async set(fault) {
      const r = await api('POST', '/faults', fault);
      if (r.status !== 200) throw new Error(`POST /faults ${JSON.stringify(fault)}: ${r.status} ${r.text}`);
      return r.json;
    },
    async clear(name) {
      const r = await api('DELETE', name === undefined ? '/faults' : `/faults/${name}`);
      if (r.status !== 200) throw new Error(`DELETE /faults/${name ?? ''}: ${r.status} ${r.text}`);
    },
  };
}
