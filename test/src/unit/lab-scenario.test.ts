import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseScenario, ScenarioError, type Scenario } from '../../../client/dist/lab/scenario.js';

const EXAMPLES = fileURLToPath(new URL('../../../examples/', import.meta.url));

const BASE = `
name: t
duration: 30
servers:
  - { name: s1, export: memory:16M }
  - { name: s2, export: memory:16M }
  - { name: s3, export: file:16M }
workload: { kind: fio }
`;

// The problems parseScenario reports for BASE with `extra` appended (YAML), or [] when it parses.
function problems(text: string, file = 'x.yaml'): string[] {
  try {
    parseScenario(text, file);
    return [];
  } catch (e) {
    assert.ok(e instanceof ScenarioError, String(e));
    return e.problems;
  }
}
const schedule = (...lines: string[]): string => `${BASE}schedule:\n${lines.map((l) => `  - ${l}`).join('\n')}\n`;

test('a minimal scenario gets every default filled', () => {
  const s: Scenario = parseScenario(BASE, 'dir/min.yaml');
  assert.equal(s.name, 't');
  assert.equal(s.file, 'dir/min.yaml');
  assert.equal(s.durationS, 30);
  assert.equal(s.sampleIntervalS, 1);
  assert.deepEqual(s.servers.map((x) => [x.name, x.export.kind, x.export.size]), [
    ['s1', 'memory', 16 << 20], ['s2', 'memory', 16 << 20], ['s3', 'file', 16 << 20],
  ]);
  assert.deepEqual(s.device, { servers: ['s1', 's2', 's3'], frontend: 'nbd', minInSync: 1, onNoQuorum: 'wait', replicaTimeoutS: 8 });
  assert.deepEqual(s.workload, { kind: 'fio', rw: 'randwrite', bs: 4096, iodepth: 16, size: 16 << 20, runtimeS: 30, verify: 'crc32c' });
  assert.deepEqual(s.schedule, []);
});

test('a full scenario in JSON reads the same as YAML, with sizes, rates and action params typed', () => {
  const doc = {
    name: 'full', description: 'all fields', duration: 60, sampleInterval: 0.5,
    servers: [
      { name: 'a', export: 'memory:8M', token: 'tok', faults: 'f.json' },
      { name: 'b', export: 'memory:8M' },
    ],
    device: { servers: ['b', 'a'], frontend: 'ublk', minInSync: 1, onNoQuorum: 'error', replicaTimeout: 2.5, resyncRate: '10M/s', ioTimeout: 30 },
    workload: { kind: 'fio', rw: 'write', bs: '64K', iodepth: 4, size: '4M', runtime: 50, verify: 'md5' },
    schedule: [
      { at: 5, action: 'slow', server: 'a', delayMs: 20, for: 10 },
      { at: 10, action: 'blackhole', server: 'b', for: 3 },
      { at: 20, action: 'kill', server: 'b' },
      { at: 22, action: 'restart', server: 'b' },
    ],
  };
  const s = parseScenario(JSON.stringify(doc, null, 2), 'full.json');
  assert.equal(s.description, 'all fields');
  assert.equal(s.sampleIntervalS, 0.5);
  assert.deepEqual(s.servers[0], { name: 'a', export: { kind: 'memory', size: 8 << 20 }, token: 'tok', faults: 'f.json' });
  assert.deepEqual(s.device, {
    servers: ['b', 'a'], frontend: 'ublk', minInSync: 1, onNoQuorum: 'error', replicaTimeoutS: 2.5, resyncRate: 10 << 20, ioTimeoutS: 30,
  });
  assert.deepEqual(s.workload, { kind: 'fio', rw: 'write', bs: 65536, iodepth: 4, size: 4 << 20, runtimeS: 50, verify: 'md5' });
  assert.deepEqual(s.schedule, [
    { atS: 5, action: 'slow', server: 'a', delayMs: 20, jitterMs: 0, forS: 10 },
    { atS: 10, action: 'blackhole', server: 'b', forS: 3 },
    { atS: 20, action: 'kill', server: 'b' },
    { atS: 22, action: 'restart', server: 'b' },
  ]);
});

test('the filesystem workload has its own keys and defaults', () => {
  const s = parseScenario(BASE.replace('workload: { kind: fio }', 'workload: { kind: fs, files: 8, fileSize: 64K, runtime: 20 }'), 'fs.yaml');
  assert.deepEqual(s.workload, { kind: 'fs', files: 8, fileSize: 65536, fsync: true, runtimeS: 20 });
  assert.deepEqual(problems(BASE.replace('workload: { kind: fio }', 'workload: { kind: fs, bs: 4K, files: 1000, fileSize: 1M }')), [
    'scenario x.yaml: workload.bs: unknown key (expected one of: kind, files, fileSize, fsync, runtime)',
    'scenario x.yaml: workload: 1000 files of 1048576 bytes need more than half the device (16777216 bytes); ext4 needs room',
  ]);
});

test('each shipped example parses', () => {
  const files = readdirSync(EXAMPLES).filter((f) => /\.(ya?ml|json)$/.test(f)).sort();
  assert.deepEqual(files, ['crash-and-resync.yaml', 'kill-and-resync.yaml', 'partition-flapping.yaml', 'slow-replica.yaml']);
  for (const f of files) {
    const s = parseScenario(readFileSync(EXAMPLES + f, 'utf8'), f);
    assert.equal(`${s.name}.yaml`, f);
    assert.ok(s.schedule.length >= 2, f);
    assert.equal(s.servers.length, 3, f);
  }
  const k = parseScenario(readFileSync(EXAMPLES + 'kill-and-resync.yaml', 'utf8'), 'kill-and-resync.yaml');
  assert.deepEqual(k.schedule, [{ atS: 10, action: 'kill', server: 's2' }, { atS: 25, action: 'restart', server: 's2' }]);
  assert.equal(k.workload.kind === 'fio' && k.workload.verify, 'crc32c');
  const c = parseScenario(readFileSync(EXAMPLES + 'crash-and-resync.yaml', 'utf8'), 'crash-and-resync.yaml');
  assert.deepEqual(c.schedule, [{ atS: 8, action: 'crash', server: 's2' }, { atS: 12, action: 'restart', server: 's2' }]);
  assert.deepEqual(c.servers.map((x) => x.export.kind), ['file', 'file', 'file'], 'a crash drops what was not flushed to a file');
});

test('a schedule naming an unknown server says which servers there are', () => {
  const text = schedule('{ at: 1, action: kill, server: s1 }', '{ at: 2, action: restart, server: s1 }', '{ at: 3, action: kill, server: s4 }');
  assert.deepEqual(problems(text, '/some/dir/kill-resync.yaml'), [
    "scenario kill-resync.yaml: schedule[2].server: no server 's4' (servers: s1, s2, s3)",
  ]);
});

test('every mistake in a file is reported, one line each, not just the first', () => {
  const text = `
name: bad name
duration: -5
sampleInterval: 2
colour: red
servers:
  - { name: s1, export: memory:16M }
  - { name: s1, export: disk:16M }
  - { name: s3, export: memory:1000 }
  - { export: memory:16M }
device: { servers: [s1, s9, s1], frontend: virtio, minInSync: 0, onNoQuorum: panic, replicaTimeout: '5s', resyncRate: 0 }
workload: { kind: fio, rw: scribble, bs: 1000, iodepth: 1.5, size: 1G, verify: xxh, runtime: 0 }
`;
  assert.deepEqual(problems(text), [
    "scenario x.yaml: colour: unknown key (expected one of: name, description, duration, sampleInterval, servers, device, workload, schedule)",
    "scenario x.yaml: name: 'bad name' may hold only letters, digits, '.', '_' and '-'",
    'scenario x.yaml: duration: -5 must be more than 0',
    "scenario x.yaml: servers[1].name: 's1' is used by an earlier server",
    "scenario x.yaml: servers[1].export: expected memory:SIZE or file:SIZE, got 'disk:16M'",
    'scenario x.yaml: servers[2].export: size 1000 must be a positive multiple of 512 bytes',
    'scenario x.yaml: servers[3].name: required',
    "scenario x.yaml: device.servers[1]: no server 's9' (servers: s1)",
    "scenario x.yaml: device.servers[2]: 's1' is listed twice",
    "scenario x.yaml: device.frontend: expected one of nbd, ublk, got 'virtio'",
    'scenario x.yaml: device.minInSync: 0 must be at least 1',
    "scenario x.yaml: device.onNoQuorum: expected one of wait, error, got 'panic'",
    "scenario x.yaml: device.replicaTimeout: expected a number, got '5s'",
    'scenario x.yaml: device.resyncRate: must be more than 0 (leave it out for no cap)',
    'scenario x.yaml: workload.runtime: 0 must be more than 0',
    "scenario x.yaml: workload.rw: expected one of write, randwrite, rw, randrw, read, randread, got 'scribble'",
    'scenario x.yaml: workload.bs: 1000 must be a positive multiple of 512 bytes',
    'scenario x.yaml: workload.iodepth: expected a whole number, got 1.5',
    'scenario x.yaml: workload.size: 1073741824 bytes is more than the device (16777216 bytes)',
    "scenario x.yaml: workload.verify: expected one of crc32c, md5, sha256, none, got 'xxh'",
  ]);
});

test('missing sections are named, and text that is not YAML is refused with its line', () => {
  assert.deepEqual(problems('name: t\n'), [
    'scenario x.yaml: duration: required',
    'scenario x.yaml: servers: required: a list of servers, e.g. [{ name: s1, export: memory:64M }]',
    'scenario x.yaml: workload: required: e.g. { kind: fio, rw: randwrite, bs: 4K }',
  ]);
  assert.deepEqual(problems('- just\n- a list\n'), ['scenario x.yaml: expected a mapping at the top (name, servers, workload, ...)']);
  const [yamlError, ...rest] = problems('name: t\nservers: [\n');
  assert.equal(rest.length, 0);
  assert.match(yamlError!, /^scenario x\.yaml: not valid YAML or JSON: .*line 3/);
  assert.match(problems('name: a\nname: b\n')[0]!, /^scenario x\.yaml: not valid YAML or JSON: Map keys must be unique at line 2, column 1$/);
});

test('schedule times must fall inside the run and come in order', () => {
  assert.deepEqual(problems(schedule(
    '{ at: 12, action: kill, server: s1 }',
    '{ at: 8, action: restart, server: s1 }',
    '{ at: 30, action: pause, server: s2 }',
    '{ at: -1, action: pause, server: s3 }',
    "{ at: '10s', action: clear, server: s3 }",
  )), [
    'scenario x.yaml: schedule[1].at: 8 s comes after an action at 12 s; list actions in time order',
    'scenario x.yaml: schedule[2].at: 30 s is not before the end of the run (duration 30 s)',
    'scenario x.yaml: schedule[3].at: -1 must be at least 0',
    "scenario x.yaml: schedule[4].at: expected a number, got '10s'",
  ]);
  assert.deepEqual(problems(schedule('{ at: 20, action: blackhole, server: s2, for: 15 }')), [
    'scenario x.yaml: schedule[0].for: ends at 35 s, after the run (duration 30 s)',
  ]);
});

test('each action takes only its own params, and slow needs its delay', () => {
  assert.deepEqual(problems(schedule(
    '{ at: 1, action: explode, server: s1 }',
    '{ at: 2, action: kill, server: s1, for: 5 }',
    '{ at: 3, action: slow, server: s2 }',
    '{ at: 4, action: slow, server: s3, delayMs: 10, jitterMs: -1, delay: 5 }',
    '{ at: 5, action: pause, server: s2, delayMs: 3 }',
    '{ at: 6, action: heal }',
  )), [
    "scenario x.yaml: schedule[0].action: expected one of kill, restart, blackhole, heal, slow, pause, resume, crash, partition, unpartition, clear, got 'explode'",
    'scenario x.yaml: schedule[1].for: unknown key (kill takes: at, action, server)',
    'scenario x.yaml: schedule[2].delayMs: required',
    'scenario x.yaml: schedule[3].delay: unknown key (slow takes: at, action, server, delayMs, jitterMs, for)',
    'scenario x.yaml: schedule[3].jitterMs: -1 must be at least 0',
    'scenario x.yaml: schedule[4].delayMs: unknown key (pause takes: at, action, server, for)',
    'scenario x.yaml: schedule[5].server: required',
  ]);
});

test('actions that cannot apply to the server at that time are refused', () => {
  assert.deepEqual(problems(schedule(
    '{ at: 1, action: restart, server: s1 }',
    '{ at: 2, action: kill, server: s2 }',
    '{ at: 3, action: crash, server: s2 }',
    '{ at: 4, action: blackhole, server: s2 }',
    '{ at: 5, action: heal, server: s3 }',
    '{ at: 6, action: pause, server: s3, for: 2 }',
    '{ at: 7, action: pause, server: s3 }',
    '{ at: 9, action: resume, server: s3 }',
  )), [
    'scenario x.yaml: schedule[0]: restart s1 at 1 s, but it is running (kill or crash it first)',
    'scenario x.yaml: schedule[2]: crash s2 at 3 s, but it is already down since 2 s',
    'scenario x.yaml: schedule[3]: blackhole s2 at 4 s, but it is down since 2 s (restart it first)',
    'scenario x.yaml: schedule[4]: heal s3 at 5 s, but no blackhole is on it then',
    'scenario x.yaml: schedule[6]: pause s3 at 7 s, but it is already on (resume it first)',
    'scenario x.yaml: schedule[7]: resume s3 at 9 s, but no pause is on it then',
  ]);
  // A fault that ended by its `for`, or was cleared, may be set again; a restarted server takes faults.
  assert.deepEqual(problems(schedule(
    '{ at: 1, action: partition, server: s1, for: 2 }',
    '{ at: 3, action: partition, server: s1 }',
    '{ at: 4, action: unpartition, server: s1 }',
    '{ at: 5, action: slow, server: s2, delayMs: 5 }',
    '{ at: 6, action: slow, server: s2, delayMs: 50 }',
    '{ at: 7, action: clear, server: s2 }',
    '{ at: 8, action: crash, server: s3 }',
    '{ at: 9, action: restart, server: s3 }',
    '{ at: 10, action: blackhole, server: s3 }',
    '{ at: 11, action: heal, server: s3 }',
  )), []);
});

test('replicas of different sizes, a quorum above the replica count and a read workload with verify are refused', () => {
  const text = `
name: t
duration: 10
servers:
  - { name: s1, export: memory:16M }
  - { name: s2, export: memory:32M }
device: { minInSync: 3 }
workload: { kind: fio, rw: randread }
`;
  assert.deepEqual(problems(text), [
    "scenario x.yaml: device.servers: the replicas' exports differ in size (s1, s2); give them one size",
    'scenario x.yaml: device.minInSync: 3 is more than the 2 replicas',
    'scenario x.yaml: workload.verify: a randread workload writes nothing to verify; use a write workload or verify: none',
  ]);
});
