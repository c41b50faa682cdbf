// Prometheus text checked by promtool (Debian `prometheus`), and read back into series.
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { requireTool } from './procs.js';

/** `promtool check metrics` on `text`: fails the test unless it exits 0 (missing under CI=true fails too). */
export async function promtoolCheck(t: TestContext, text: string): Promise<void> {
  if (!(await requireTool(t, 'promtool'))) return;
  const child = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => { out += b; });
  child.stderr.on('data', (b: Buffer) => { out += b; });
  child.stdin.end(text);
  const code = await new Promise<number | null>((r) => child.on('close', r));
  assert.equal(code, 0, `promtool check metrics:\n${out}`);
}

/** The value of one series, e.g. series(text, 'x_total', {export: 'disk0'}); undefined when absent. */
export function series(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}
