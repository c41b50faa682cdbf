#!/usr/bin/env node
// Runs the compiled tests with node's test runner.
//   node test/run.mjs            every suite: unit, integration, interop, faults, then vm
//   node test/run.mjs unit nbd   only test files whose path contains one of the words
// Test files live in test/src/<suite>/*.test.ts and are compiled to test/dist.
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = new URL('./dist/', import.meta.url).pathname;
const order = ['unit', 'integration', 'interop', 'faults', 'vm'];

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const filters = process.argv.slice(2);
const rank = (f) => {
  const i = order.findIndex((s) => relative(root, f).startsWith(s + '/'));
  return i < 0 ? order.length : i;
};
const files = walk(root)
  .filter((f) => filters.length === 0 || filters.some((w) => relative(root, f).includes(w)))
  .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
if (files.length === 0) {
  console.error(`no test files match ${filters.join(' ') || '(all)'} under ${root}`);
  process.exit(1);
}
const r = spawnSync(process.execPath, ['--test', '--test-reporter=spec', ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
