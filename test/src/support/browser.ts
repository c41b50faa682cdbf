// Headless chromium driven over the DevTools protocol, for the tests that check a page as people
// see it: console calls, uncaught exceptions and failed loads are collected per page.
/* eslint-disable @typescript-eslint/no-explicit-any */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import WebSocket from 'ws';

// One browser, one page at a time.
export interface Page {
  errors: string[];
  evaluate(expression: string): Promise<unknown>;
  screenshot(): Promise<Buffer>;
}

export class Browser {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  private readonly listeners = new Set<(msg: any) => void>();

  private constructor(private readonly child: ChildProcess, private readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const msg = JSON.parse(String(data));
      const p = msg.id !== undefined ? this.pending.get(msg.id) : undefined;
      if (p) {
        this.pending.delete(msg.id);
        if (msg.error) p.reject(new Error(`DevTools: ${msg.error.message}`));
        else p.resolve(msg.result);
      }
      for (const l of this.listeners) l(msg);
    });
  }

  static async launch(t: TestContext, dir: string): Promise<Browser> {
    const profile = join(dir, 'profile');
    mkdirSync(profile);
    const child = spawn('chromium', [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--user-data-dir=${profile}`, '--remote-debugging-port=0', 'about:blank',
    ], { stdio: ['ignore', 'ignore', 'pipe'], detached: true }); // its own group: the wrapper script does not exec
    let stderr = '';
    const endpoint = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`chromium gave no DevTools address in 30 s:\n${stderr}`)), 30_000);
      child.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
        const m = /DevTools listening on (ws:\/\/\S+)/.exec(stderr);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`chromium exited (${code}) before listening:\n${stderr}`));
      });
    });
    const ws = new WebSocket(endpoint, { perMessageDeflate: false });
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const browser = new Browser(child, ws);
    t.after(() => browser.close());
    return browser;
  }

  private send(method: string, params: object = {}, sessionId?: string): Promise<any> {
    const id = this.nextId++;
    this.ws.send(JSON.stringify({ id, method, params, ...(sessionId && { sessionId }) }));
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
  }

  /** Opens url in a fresh 1280 px wide tab; resolves after its load event, with its errors so far. */
  async open(url: string): Promise<Page> {
    const { targetId } = await this.send('Target.createTarget', { url: 'about:blank' });
    const { sessionId } = await this.send('Target.attachToTarget', { targetId, flatten: true });
    const errors: string[] = [];
    let loaded!: () => void;
    const load = new Promise<void>((r) => (loaded = r));
    this.listeners.add((msg) => {
      if (msg.sessionId !== sessionId) return;
      const p = msg.params;
      if (msg.method === 'Runtime.consoleAPICalled' && ['error', 'assert'].includes(p.type)) {
        errors.push(`console.${p.type}: ${p.args.map((a: any) => a.value ?? a.description).join(' ')}`);
      } else if (msg.method === 'Runtime.exceptionThrown') {
        errors.push(`exception: ${p.exceptionDetails.exception?.description ?? p.exceptionDetails.text}`);
      } else if (msg.method === 'Log.entryAdded' && p.entry.level === 'error') {
        errors.push(`${p.entry.source}: ${p.entry.text} ${p.entry.url ?? ''}`.trim());
      } else if (msg.method === 'Page.loadEventFired') {
        loaded();
      }
    });
    for (const m of ['Runtime.enable', 'Log.enable', 'Page.enable']) await this.send(m, {}, sessionId);
    await this.send('Emulation.setDeviceMetricsOverride', { width: 1280, height: 900, deviceScaleFactor: 1, mobile: false }, sessionId);
    await this.send('Page.navigate', { url }, sessionId);
    await load;
    // Errors from the last tasks of the load arrive after the event: wait for one more round trip.
    await this.send('Runtime.evaluate', { expression: 'new Promise((r) => setTimeout(r, 100))', awaitPromise: true }, sessionId);
    return {
      errors,
      evaluate: async (expression) => {
        const r = await this.send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true }, sessionId);
        if (r.exceptionDetails) throw new Error(`in the page: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
        return r.result.value;
      },
      screenshot: async () => {
        const { cssContentSize } = await this.send('Page.getLayoutMetrics', {}, sessionId);
        const clip = { x: 0, y: 0, width: 1280, height: Math.ceil(cssContentSize.height), scale: 1 };
        const { data } = await this.send('Page.captureScreenshot', { format: 'png', clip, captureBeyondViewport: true }, sessionId);
        return Buffer.from(data, 'base64');
      },
    };
  }

  async close(): Promise<void> {
    const exited = new Promise<void>((r) => (this.child.exitCode !== null ? r() : this.child.once('exit', () => r())));
    await Promise.race([this.send('Browser.close').catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
    this.ws.close();
    const timer = setTimeout(() => { try { process.kill(-this.child.pid!, 'SIGKILL'); } catch { /* gone */ } }, 5000);
    await exited;
    clearTimeout(timer);
    // Helpers (zygote, GPU) share the group and may outlive the browser by a moment.
    try { process.kill(-this.child.pid!, 'SIGKILL'); } catch { /* all gone */ }
  }
}
