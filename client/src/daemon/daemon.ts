import { Errno, Op, errnoName, logger } from '@wsblk/shared';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { TargetSpec } from '../target-spec.js';
import { serveControl, type ControlRequest } from './control.js';
import { openTarget, type DeviceTarget, type ReplicaControl } from './device-target.js';
import type { Frontend, FrontendFactory } from './frontend.js';
import { tuneDaemonMemory } from './memory.js';
import { DaemonMetrics, serveMetrics } from './metrics.js';
import type { Server } from 'node:http';
import { controlPath, removeDeviceFiles, runDir, writeState, type DeviceState } from './rundir.js';

const log = logger('daemon');

/** How long a disconnect waits for the server to answer the final FLUSH. */
const FINAL_FLUSH_MS = 15_000;
/** How long a disconnect waits for an unreachable server before failing outstanding I/O. */
const STOP_GRACE_MS = 5_000;

export interface DaemonOptions {
  id: string;
  kind: 'nbd' | 'ublk';
  /** What to connect to and how: kept in the state file as it is, its session id kept current. */
  target: TargetSpec;
  /** Take the export over from its writer on this first connect (connect --steal). */
  steal?: boolean;
  /** This start's connect timeout (ms), instead of the spec's: recover waits for the server forever. */
  connectTimeoutMs?: number;
  /** Told every few seconds while the first connect keeps failing. */
  onWait?: (line: string) => void;
  frontend: FrontendFactory;
  /** The frontend's and the CLI's options, recorded in the state file (for recover). */
  recorded: Record<string, unknown>;
  extraState?: Partial<DeviceState>;
  /** Serve the metrics over HTTP GET /metrics here too (connect --metrics-listen). */
  metricsListen?: { host: string; port: number };
}

/**
 * A connected device: transport + frontend + control socket + state file. Runs until
 * disconnect (control socket or SIGTERM/SIGINT), then flushes, stops and cleans up.
 */
export class Daemon {
  private disk!: DeviceTarget;
  private frontend!: Frontend;
  private state!: DeviceState;
  private stopping: Promise<void> | undefined;
  readonly dir = runDir();
  /** Resolves when the daemon has stopped; the value is the exit code. */
  readonly done: Promise<number>;
  private finish!: (code: number) => void;
  /** This daemon's Prometheus registry and the meters behind it. */
  readonly metrics: DaemonMetrics;
  private metricsHttp: Server | undefined;

  constructor(private readonly opts: DaemonOptions) {
    this.done = new Promise((r) => (this.finish = r));
    this.metrics = new DaemonMetrics(opts.id);
  }

  get device(): string {
    return this.frontend.device;
  }

  async start(): Promise<DeviceState> {
    const { id } = this.opts;
    tuneDaemonMemory();
    try {
      // Both frontends are done with READ data when their callback returns, or retain it (NBD).
      const { steal, connectTimeoutMs, onWait } = this.opts;
      this.disk = await openTarget(this.opts.target, {
        dir: this.dir, id, metrics: this.metrics,
        ...(steal ? { steal } : {}), ...(connectTimeoutMs !== undefined ? { connectTimeoutMs } : {}), ...(onWait ? { onWait } : {}),
      });
      const at = this.opts.metricsListen;
      if (at) this.metricsHttp = await serveMetrics(this.metrics, at.host, at.port);
      this.frontend = await this.opts.frontend(this.disk);
    } catch (e) {
      this.metricsHttp?.close();
      if (this.disk) await this.disk.close(0);
      removeDeviceFiles(this.dir, id);
      throw e;
    }
    // The spec as it is now (sessions resumed or new, the set's record): kept current below.
    const target: TargetSpec = this.opts.target;
    this.state = {
      id, kind: this.opts.kind, device: this.frontend.device, url: target.url, pid: process.pid,
      // sessionId mirrors target.sessionId for readers of the older layout.
      sessionId: target.sessionId, options: this.opts.recorded, target, startedAt: new Date().toISOString(),
      ...this.opts.extraState,
    };
    writeState(this.dir, this.state);
    // Session ids change when a server restarts, a set's epoch with its membership: recovery
    // must resume the current sessions and trust the record it stored last.
    this.disk.onChange(() => {
      this.state.sessionId = target.sessionId;
      writeState(this.dir, this.state);
    });
    this.disk.onFenced((why: string) => {
      log.error(`the server will not take this device back (${why}); stopping`);
      void this.stop(3);
    });
    await serveControl(controlPath(this.dir, id), (req) => this.onControl(req));
    for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(sig, () => void this.stop(0));
    log.info(`${id}: ${this.frontend.device} serving ${this.disk.where} (${this.disk.info.size} bytes)`);
    return this.state;
  }

  status(): Record<string, unknown> {
    return {
      id: this.state.id, kind: this.state.kind, device: this.state.device, url: this.state.url, pid: process.pid,
      ...this.disk.status(),
      size: this.disk.info.size, readOnly: this.disk.info.readOnly, ...this.frontend.status?.(),
    };
  }

  private async onControl(req: ControlRequest): Promise<unknown> {
    switch (req.cmd) {
      case 'status':
        return this.status();
      case 'metrics':
        return { metrics: await this.metrics.text() };
      case 'disconnect':
        await this.stop(0);
        return { ok: true, id: this.state.id, device: this.state.device };
      case 'replica-add':
      case 'replica-remove': {
        const ctl = this.disk as Partial<ReplicaControl>;
        if (!ctl.addReplica || !ctl.removeReplica) throw new Error(`${this.state.id} is not a replica set (connect URL1,URL2,... makes one)`);
        const url = String(req.url ?? '');
        if (req.cmd === 'replica-add') await ctl.addReplica(url);
        else await ctl.removeReplica(url);
        return this.status();
      }
      default:
        throw new Error('unknown command');
    }
  }

  /** Stop: no new requests, outstanding ones finish, FLUSH, close the transport, clean up. */
  stop(code: number): Promise<void> {
    this.stopping ??= (async () => {
      log.info(`${this.state.id}: disconnecting`);
      try {
        // The frontend waits for its outstanding requests; with the server gone they would
        // wait forever (no --io-timeout): after a grace period, fail them so the stop finishes.
        const watchdog = setInterval(() => {
          if (this.disk.connected) return;
          log.warn(`server unreachable: failing ${this.disk.inflight} outstanding requests to finish the disconnect`);
          clearInterval(watchdog);
          void this.disk.close(0);
        }, STOP_GRACE_MS);
        try {
          await this.frontend.close();
        } finally {
          clearInterval(watchdog);
        }
        if (this.disk.info.flush) {
          // Bounded: a disconnect must not hang because the server is gone.
          const wait = this.disk.connected ? FINAL_FLUSH_MS : STOP_GRACE_MS;
          const status = await new Promise<number | 'timeout'>((r) => {
            const timer = setTimeout(() => r('timeout'), wait);
            this.disk.submit({ op: Op.Flush, offset: 0, length: 0, flags: 0 }, (st) => { clearTimeout(timer); r(st); });
          });
          if (status === 'timeout') log.warn(`final flush not answered within ${wait / 1000} s (server unreachable?)`);
          else if (status !== Errno.OK) log.warn(`final flush failed: ${errnoName(status)}`);
        }
        const left = this.disk.inflight;
        await this.disk.close(0);
        if (left) log.warn(`${left} requests were still unanswered and have been failed`);
      } catch (e) {
        log.error(`disconnect: ${(e as Error).message}`);
        code ||= 1;
      }
      this.metricsHttp?.close();
      removeDeviceFiles(this.dir, this.state.id);
      // Dirty maps of replicas that were out: a later attach compares them instead.
      for (const f of readdirSync(this.dir)) if (f.startsWith(`${this.state.id}.`) && f.endsWith('.dirty')) rmSync(join(this.dir, f), { force: true });
      log.info(`${this.state.id}: stopped`);
      this.finish(code);
    })();
    return this.stopping;
  }
}
