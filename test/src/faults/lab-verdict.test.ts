// The lab's verdict can fail, and a bad scenario or option is refused before anything starts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { labRun } from '../support/lab-run.js';
import { requireTool, tempDir, wsblk } from '../support/procs.js';

// minInSync 3 of 3 with onNoQuorum error: once s2 is killed and ejected, writes fail with EIO.
const RED = `
name: red
duration: 8
servers:
  - { name: s1, export: memory:16M }
  - { name: s2, export: memory:16M }
  - { name: s3, export: file:16M }
device: { minInSync: 3, onNoQuorum: error, replicaTimeout: 1 }
workload: { kind: fio, bs: 4K, iodepth: 4, size: 8M, runtime: 7 }
schedule:
  - { at: 2, action: kill, server: s2 }
`;

test('lab run: a run whose writes fail is red (exit 1): fio saw errors, our writer\'s failures are counted; a file export is kept in the folder', { timeout: 120_000 }, async (t) => {
  if (!(await requireTool(t, 'fio'))) return;
  const file = join(tempDir(t), 'red.yaml');
  writeFileSync(file, RED);
  const r = await labRun(t, file, ['--quiet']);
  t.diagnostic(r.stdout.trim());
  assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /red\.yaml: FAIL\n$/);
  assert.equal(r.run.verdict.ok, false);
  const fio = r.run.verdict.checks.find((c) => c.name === 'fio verify')!;
  assert.equal(fio.ok, false, fio.detail);
  assert.ok(r.run.fio!.errors > 0, 'fio counted errors');
  assert.match(r.stdout, /^FAIL {2}fio verify: fio exit [1-9]/m);
  assert.ok(r.reportExists);
  assert.ok(existsSync(join(r.folder, 's3.img')), 'the file export lives in the results folder');
});

test('lab run: a bad scenario, an unsupported one, a missing file and a bad option exit 2 with one line each; nothing is started', async (t) => {
  const dir = tempDir(t);
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'name: x\nduration: 10\nservers: [{ name: s1, export: disk:1G }]\nworkload: { kind: fio }\n');
  const r1 = await wsblk(['lab', 'run', bad, '--out', join(dir, 'out')]);
  assert.equal(r1.code, 2);
  assert.equal(r1.stderr, "wsblk: scenario bad.yaml: servers[0].export: expected memory:SIZE or file:SIZE, got 'disk:1G'\n");
  assert.equal(existsSync(join(dir, 'out')), false, 'no results folder for a refused scenario');

  const fs = join(dir, 'fs.yaml');
  writeFileSync(fs, 'name: x\nduration: 10\nservers: [{ name: s1, export: memory:64M }]\nworkload: { kind: fs, files: 4 }\n');
  const r2 = await wsblk(['lab', 'run', fs]);
  assert.equal(r2.code, 2);
  assert.match(r2.stderr, /^wsblk: scenario fs\.yaml: the fs workload is not yet supported by `wsblk lab run`; use kind: fio\n$/);

  const r3 = await wsblk(['lab', 'run', join(dir, 'missing.yaml')]);
  assert.equal(r3.code, 2);
  assert.match(r3.stderr, /^wsblk: cannot read scenario .*missing\.yaml: ENOENT\n$/);

  const r4 = await wsblk(['lab', 'run', bad, '--speed', '2']);
  assert.equal(r4.code, 2);
  assert.match(r4.stderr, /unknown option '--speed'/);

  const help = await wsblk(['lab', 'run', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--out <dir>/);
  assert.match(help.stdout, /Exit 0: every check passed; 1: a check failed/);
});
