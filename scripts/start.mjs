#!/usr/bin/env node
// `npm start`: a storage server with a default export (a 1 GiB sparse file under ./data) on
// localhost, connected as a local device: ublk where the kernel has it, else an NBD export.
// The server takes one token, generated into ./data/token (0600). Ctrl-C disconnects the
// device, then stops the server.
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, writeFileSync } from 'node:fs';
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

// A token even on loopback: a web page can reach a token-less local server (DNS rebinding).
// It stays in a file (never in argv, where `ps` shows it) and is kept across starts.
const tokenFile = join(data, 'token');
if (!existsSync(tokenFile)) {
  writeFileSync(tokenFile, randomBytes(32).toString('base64url') + '\n', { mode: 0o600, flag: 'wx' });
}
const tokenStat = lstatSync(tokenFile);
if (!tokenStat.isFile() || tokenStat.uid !== process.getuid?.() || (tokenStat.mode & 0o077)) {
  console.error(`wsblk start: ${tokenFile} must be a file of yours that only you can read (chmod 600 it, or remove it for a new token)`);
  process.exit(1);
}
const env = { ...process.env };
delete env.WSBLK_TOKEN; // the token file is the only one

const image = join(data, `${exportName}.img`);
const serve = [wsblk, 'serve', '--listen', `127.0.0.1:${port}`, '--token-file', tokenFile,
  '--export', `${exportName}=file:${image}${existsSync(image) ? '' : ',size=1G'}`];
// The server is in a process group of its own, so a Ctrl-C in the terminal reaches only this
// script, which disconnects the device first. setpriv stops it if this script is killed.
const pdeathsig = spawnSync('setpriv', ['--pdeathsig', 'TERM', 'true']).status === 0;
const server = pdeathsig
  ? spawn('setpriv', ['--pdeathsig', 'TERM', '--', process.execPath, ...serve], { stdio: ['ignore', 'inherit', 'inherit'], detached: true, env })
  : spawn(process.execPath, serve, { stdio: ['ignore', 'inherit', 'inherit'], detached: true, env });
server.on('exit', (code) => {
  if (!stopping) { console.error(`wsblk start: the server exited (${code})`); process.exit(1); }
});
process.on('exit', () => server.kill('SIGTERM'));
let stopping = false;
for (let i = 0; !(await portOpen()); i++) {
  if (i > 200) { console.error('wsblk start: the server did not start listening'); server.kill(); process.exit(1); }
  await sleep(50);
}

const url = `ws://127.0.0.1:${port}/${exportName}`;
const ublk = existsSync('/dev/ublk-control');
const args = ['connect', url, '--token-file', tokenFile, ...(ublk ? [] : ['--nbd', join(data, `${exportName}.sock`)])];
let device;
try {
  device = execFileSync(process.execPath, [wsblk, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], env }).trim();
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
say(`The server takes only the token in ${tokenFile} (yours alone; remove it for a new one). Another device:`);
say(`  node ${wsblk} connect ${url} --token-file ${tokenFile} --nbd /tmp/other.sock`);
say('');
say('Press Ctrl-C to disconnect and stop the server.');

const stop = async () => {
  if (stopping) return;
  stopping = true;
  say('\nDisconnecting...');
  try {
    execFileSync(process.execPath, [wsblk, 'disconnect', device], { stdio: 'inherit', env });
  } catch { /* the error was printed */ }
  server.kill('SIGTERM');
  await new Promise((r) => server.once('exit', r));
  say('Stopped.');
  process.exit(0);
};
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, stop);
