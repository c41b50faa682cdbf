import { test } from 'node:test';
import assert from 'node:assert/strict';
import { exportForTest, haveTools, run } from './nbd-harness.js';

interface FioJob {
  jobname: string;
  error: number;
  write: { io_bytes: number; iops: number; bw: number };
  read: { io_bytes: number; iops: number; bw: number };
}

test('fio nbd engine: 64 MiB of 4k random writes at depth 32 verify with crc32c', { timeout: 600_000 }, async (t) => {
  if (!haveTools(t, 'fio')) return;
  const { uri } = await exportForTest(t);
  const r = await run('fio', [
    '--name=nbd-randwrite-verify',
    '--ioengine=nbd',
    `--uri=${uri}`,
    '--rw=randwrite',
    '--bs=4k',
    '--iodepth=32',
    '--size=64M',
    '--verify=crc32c',
    '--verify_state_save=0', // no state file left in the working directory
    '--output-format=json',
  ]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const out = JSON.parse(r.stdout.slice(r.stdout.indexOf('{')));
  const job: FioJob = out.jobs[0];
  assert.equal(job.error, 0);
  assert.equal(job.write.io_bytes, 64 << 20);
  // The verify phase reads everything back.
  assert.equal(job.read.io_bytes, 64 << 20);
  t.diagnostic(`randwrite ${Math.round(job.write.iops)} IOPS, ${(job.write.bw / 1024).toFixed(1)} MiB/s; verify read ${Math.round(job.read.iops)} IOPS`);
});
