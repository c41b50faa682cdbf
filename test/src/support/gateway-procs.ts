// Gateways of one store, with real processes: `wsblk serve` processes that all export the SAME
// file as `d`, standing in for stateless gateways in front of one Ceph RBD image.
// There is no fence across these servers (each fences only its own sessions): for real gateways
// RBD's exclusive lock is that fence. The tests here kill a gateway before the next one is used.
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { tempDir } from './procs.js';
import { ReplicaServer, listSet, waitSet, type SetDaemon } from './replica-procs.js';
import type { Proc } from './procs.js';

/** A device with failover gateways, as `wsblk list --json` shows it. */
export interface GatewayView {
  id: string;
  state: string;
  url: string;
  gateway?: string;
  failover?: string[];
  failovers?: number;
  reconnects: number;
  sessionId?: string;
}

export interface Gateways {
  dir: string;
  file: string;
  servers: ReplicaServer[];
  urls: string[];
}

/** n servers exporting one file (created by the first, 64 MiB) as `d`. */
export async function sameFileGateways(t: TestContext, n: number): Promise<Gateways> {
  const dir = tempDir(t);
  const file = join(dir, 'image.raw');
  const servers: ReplicaServer[] = [];
  // One after the other: the first creates the file, the others open it.
  for (let i = 0; i < n; i++) servers.push(await ReplicaServer.exporting(t, `d=file:${file},size=64M`));
  return { dir, file, servers, urls: servers.map((s) => s.url) };
}

/** `--failover` for every URL after the first. */
export const failoverArgs = (urls: string[]): string[] => urls.slice(1).flatMap((u) => ['--failover', u]);

export const listDevice = (d: SetDaemon | { runDir: string }) => listSet<GatewayView>(d.runDir);

/** Waits until the device is connected through `gateway`. */
export function waitGateway(d: { runDir: string; proc?: Proc }, gateway: string, what: string, timeoutMs = 30_000): Promise<GatewayView> {
  return waitSet<GatewayView>(d.runDir, (v) => v.state === 'connected' && v.gateway === gateway, what, timeoutMs, d.proc);
}
