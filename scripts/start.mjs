#!/usr/bin/env node
// `npm start`: a storage server with a default export (a 1 GiB sparse file under ./data) on
// localhost, connected as a local device: ublk where the kernel has it, else an NBD export.
// Ctrl-C disconnects the device and stops the server.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const wsblk = join(root, 'client/bin/wsblk.js');
const data = resolve(process.env.WSBLK_DATA_DIR ?? join(root, 'data'));
const port = Number(process.env.WSBLK_PORT ?? 7690);
const exportName = 'disk0';
mkdirSync(data, { recursive: true });
process.env.WSBLK_RUN_DIR ||= join(data, 'run');

const say = (m) => process.stdout.write(m + '\n');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const portOpen = () => new Promise((r) => {
  const s = createConnection(port, '127.0.0.1');
  s.once('connect', () => { s.destroy(); r(true); });
  s.once('error', () => r(false));
});

if (await portOpen()) {
  console.error(`wsblk start: port ${port} is already in use (set WSBLK_PORT to use another)`);
  process.exit(1);
}

const image = join(data, `${exportName}.img`);
const server = spawn(process.execPath, [wsblk, 'serve', '--listen', `127.0.0.1:${port}`,
  '--export', `${exportName}=file:${image}${existsSync(image) ? '' : ',size=1G'}`], { stdio: ['ignore', 'inherit', 'inherit'] });
server.on('exit', (code) => {
  if (!stopping) { console.error(`wsblk start: the server exited (${code})`); process.exit(1); }
});
let stopping = false;
for (let i = 0; !(await portOpen()); i++) {
  if (i > 200) { console.error('wsblk start: the server did not start listening'); server.kill(); process.exit(1); }
  await sleep(50);
}

const url = `ws://127.0.0.1:${port}/${exportName}`;
const ublk = existsSync('/dev/ublk-control');
const args = ['connect', url, ...(ublk ? [] : ['--nbd', join(data, `${exportName}.sock`)])];
let device;
try {
  device = execFileSync(process.execPath, [wsblk, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
} catch {
  stopping = true;
  server.kill('SIGTERM');
  process.exit(1);
}

say('');
say(`wsblk is running: ${url} (${image}) is connected as`);
say(`  ${device}`);
say('');
if (ublk) {
  say('Try:');
  say(`  mkfs.ext4 ${device} && mkdir -p /mnt/wsblk && mount ${device} /mnt/wsblk`);
} else {
  say(`No ublk driver here (/dev/ublk-control is missing), so the disk is an NBD export. Try:`);
  say(`  nbdinfo '${device}'`);
  say(`  qemu-io -f raw -c 'write -P 0xab 0 1M' -c 'read -P 0xab 0 1M' '${device}'`);
  say(`  fio --name=t --ioengine=nbd --uri='${device}' --rw=randrw --bs=4k --iodepth=32 --size=256M --verify=crc32c`);
}
say(`  WSBLK_RUN_DIR=${process.env.WSBLK_RUN_DIR} node ${wsblk} list`);
say('');
say('Press Ctrl-C to disconnect and stop the server.');

const stop = async () => {
  if (stopping) return;
  stopping = true;
  say('\nDisconnecting...');
  try {
    execFileSync(process.execPath, [wsblk, 'disconnect', device], { stdio: 'inherit' });
  } catch { /* the error was printed */ }
  server.kill('SIGTERM');
  await new Promise((r) => server.once('exit', r));
  say('Stopped.');
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
