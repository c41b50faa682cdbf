// A real `wsblk serve` with its admin listener, and the fault API as calls: the tests of
// fault injection set and clear faults the way an experimenter would.
import type { TestContext } from 'node:test';
import { performance } from 'node:perf_hooks';
import { RemoteDisk, type RemoteDiskOptions } from '@wsblk/client';
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
  // The admin listener answers JSON, errors too: anything else fails the test here.
  return { status: res.status, text, json: text ? JSON.parse(text) : undefined };
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

/** A RemoteDisk with quick reconnects, closed at the end of the test. */
export async function faultClient(t: TestContext, url: string, clientId: string, extra: Partial<RemoteDiskOptions> = {}): Promise<RemoteDisk> {
  const d = await RemoteDisk.connect({ url, clientId, connectTimeoutMs: 5000, backoffInitialMs: 20, backoffMaxMs: 200, ...extra });
  t.after(() => d.close());
  return d;
}

/** Runs f and measures it (ms). */
export async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await f();
  return [r, performance.now() - t0];
}
