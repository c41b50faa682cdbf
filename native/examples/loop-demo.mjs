#!/usr/bin/env node
// A loop-style ublk device served from JS with @wsblk/native, backed by a file or by memory.
//
//   node native/examples/loop-demo.mjs serve   --backing FILE --size 256M [--id N] [--queues 2] [--depth 64] [--max-io 512K]
//   node native/examples/loop-demo.mjs serve   --memory --size 64M ...
//   node native/examples/loop-demo.mjs recover --backing FILE --id N
//   node native/examples/loop-demo.mjs checks
//
// serve: ADD_DEV, SET_PARAMS, open every queue (FETCH all tags), START_DEV; prints
// "READY id=N dev=/dev/ublkbN". recover: takes over device N after its daemon was killed
// (user recovery) and prints "RECOVERED id=N ...". Both serve until SIGTERM/SIGINT, then
// STOP_DEV, close the queues, DEL_DEV, print request statistics and exit 0.
// checks: the control error paths and timeouts against the real kernel, and in-process I/O
// through /dev/ublkbN on a memory-backed device; prints "ok"/"FAIL" lines, exits 1 on a failure.
import { closeSync, existsSync, fdatasync, ftruncateSync, openSync, read, write } from 'node:fs';
import { open as openFile } from 'node:fs/promises';

import {
  FALLOC, UBLK_IO_F, UBLK_IO_OP, addDevice, blockDevicePath, deleteDevice, fallocate,
  featureNames, getDeviceInfo, getFeatures, getParams, isUblkSystemError, openQueues, recoverDevice,
  setParams, startDevice, startUserRecovery, stopDevice,
} from '../dist/index.js';

const EIO = -5;
const EOPNOTSUPP = -95;

function parseSize(s) {
  const m = /^(\d+)([KMGT]?)$/i.exec(s ?? '');
  if (!m) throw new Error(`bad size ${s}`);
  return Number(m[1]) * 1024 ** ' KMGT'.indexOf((m[2] || ' ').toUpperCase());
}

function parseArgs(argv) {
  const o = { cmd: argv[0], id: -1, queues: 2, depth: 64, maxIo: 512 * 1024 };
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i];
    if (a === '--backing') o.backing = next();
    else if (a === '--memory') o.memory = true;
    else if (a === '--size') o.size = parseSize(next());
    else if (a === '--id') o.id = Number(next());
    else if (a === '--queues') o.queues = Number(next());
    else if (a === '--depth') o.depth = Number(next());
    else if (a === '--max-io') o.maxIo = parseSize(next());
    else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

const log = (...a) => console.log(`[loop-demo ${process.pid}]`, ...a);

/** The storage: read/write/flush/discard/writeZeroes, each completing through cb(result). */
function fileStore(path, size) {
  const fd = openSync(path, existsSync(path) ? 'r+' : 'w+');
  if (size !== undefined) ftruncateSync(fd, size);
  const done = (cb, okValue) => (err, n) => cb(err ? (err.errno ?? EIO) : okValue ?? n);
  return {
    read(buf, len, off, cb) {
      read(fd, buf, 0, len, off, (err, n) => {
        if (!err && n < len) buf.fill(0, n, len); // past EOF reads as zeros
        cb(err ? (err.errno ?? EIO) : len);
      });
    },
    write(buf, len, off, fua, cb) {
      write(fd, buf, 0, len, off, (err, n) => {
        if (err || !fua) return cb(err ? (err.errno ?? EIO) : n);
        fdatasync(fd, done(cb, n));
      });
    },
    flush(cb) { fdatasync(fd, done(cb, 0)); },
    discard(len, off, cb) {
      fallocate(fd, FALLOC.PUNCH_HOLE | FALLOC.KEEP_SIZE, off, len).then((e) => cb(e ? -e : 0));
    },
    writeZeroes(len, off, cb) {
      fallocate(fd, FALLOC.ZERO_RANGE, off, len).then((e) => {
        if (e === 95) { // tmpfs: no ZERO_RANGE; a punched hole reads as zeros too
          return fallocate(fd, FALLOC.PUNCH_HOLE | FALLOC.KEEP_SIZE, off, len).then((e2) => cb(e2 ? -e2 : 0));
        }
        cb(e ? -e : 0);
      });
    },
    close() { closeSync(fd); },
  };
}

function memoryStore(size) {
  const mem = Buffer.alloc(size);
  return {
    read(buf, len, off, cb) { mem.copy(buf, 0, off, off + len); cb(len); },
    write(buf, len, off, _fua, cb) { buf.copy(mem, off, 0, len); cb(len); },
    flush(cb) { cb(0); },
    discard(len, off, cb) { mem.fill(0, off, off + len); cb(0); },
    writeZeroes(len, off, cb) { mem.fill(0, off, off + len); cb(0); },
    close() {},
  };
}

const stats = { batches: 0, requests: 0, maxBatch: 0, reads: 0, writes: 0, fua: 0, flushes: 0,
  discards: 0, writeZeroes: 0, other: 0, faults: 0 };

function handlers(store) {
  return {
    onRequests(batch, queue) {
      stats.batches++;
      stats.requests += batch.length;
      if (batch.length > stats.maxBatch) stats.maxBatch = batch.length;
      for (let i = 0; i < batch.length; i++) {
        const tag = batch.tag(i);
        const off = batch.offset(i);
        const len = batch.bytes(i);
        const complete = (res) => queue.complete(tag, res);
        switch (batch.op(i)) {
          case UBLK_IO_OP.READ:
            stats.reads++;
            store.read(queue.tagBuffer(tag), len, off, complete);
            break;
          case UBLK_IO_OP.WRITE: {
            const fua = (batch.flags(i) & UBLK_IO_F.FUA) !== 0;
            stats.writes++;
            if (fua) stats.fua++;
            store.write(queue.tagBuffer(tag), len, off, fua, complete);
            break;
          }
          case UBLK_IO_OP.FLUSH:
            stats.flushes++;
            store.flush(complete);
            break;
          case UBLK_IO_OP.DISCARD:
            stats.discards++;
            store.discard(len, off, complete);
            break;
          case UBLK_IO_OP.WRITE_ZEROES:
            stats.writeZeroes++;
            store.writeZeroes(len, off, complete);
            break;
          default:
            stats.other++;
            complete(EOPNOTSUPP);
        }
      }
    },
    onStopped(queue) { log(`queue ${queue.queueId} stopped`); },
    onFault(fault) { stats.faults++; log('fault:', fault.message); },
  };
}

function serveUntilSignalled(id, queues, store) {
  let stopping = false;
  const shutdown = async (sig) => {
    if (stopping) return;
    stopping = true;
    log(`${sig}: STOP_DEV ${id}`);
    try {
      await stopDevice(id);
      for (const q of queues) q.close();
      await deleteDevice(id);
      store.close();
      log(`deleted device ${id}; stats ${JSON.stringify(stats)}`);
      process.exit(0);
    } catch (e) {
      log(`shutdown failed: ${e.code ?? ''} ${e.message}`);
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

async function serve(o) {
  if (!o.size) throw new Error('--size is required');
  const store = o.memory ? memoryStore(o.size) : fileStore(o.backing, o.size);
  const features = await getFeatures();
  log(`kernel features: ${featureNames(features).join(' ')}`);
  const info = await addDevice({ id: o.id, queues: o.queues, depth: o.depth, maxIoBytes: o.maxIo, features });
  log(`added device ${info.id}: ${info.nrQueues} queues x ${info.queueDepth} tags, max io ${info.maxIoBytes}, flags ${featureNames(info.flags).join('|')}`);
  await setParams(info.id, {
    sizeBytes: o.size,
    logicalBlockSize: 512,
    physicalBlockSize: 4096,
    volatileCache: true,
    fua: true,
    discard: { granularityBytes: 4096, maxDiscardSectors: 1 << 16, maxWriteZeroesSectors: 1 << 16 },
  });
  const h = handlers(store);
  const queues = await openQueues({ device: info, handlers: () => h });
  const t0 = Date.now();
  await startDevice(info.id); // runs off this thread; the partition scan's reads are served here meanwhile
  const live = await getDeviceInfo(info.id);
  log(`START_DEV took ${Date.now() - t0} ms; state ${live.state}, pid ${live.daemonPid}`);
  console.log(`READY id=${info.id} dev=${blockDevicePath(info.id)}`);
  serveUntilSignalled(info.id, queues, store);
}

async function recover(o) {
  if (o.id < 0) throw new Error('--id is required');
  const store = fileStore(o.backing);
  const before = await getDeviceInfo(o.id);
  log(`device ${o.id} before recovery: state ${before.state}, old pid ${before.daemonPid}, flags ${featureNames(before.flags).join('|')}`);
  const h = handlers(store);
  const t0 = Date.now();
  const { info, queues } = await recoverDevice(o.id, {
    handlers: () => h,
    beforeEnd: (i) => log(`all ${i.nrQueues * i.queueDepth} tags fetched; END_USER_RECOVERY`),
  });
  log(`recovered in ${Date.now() - t0} ms: state ${info.state}, pid ${info.daemonPid}`);
  console.log(`RECOVERED id=${o.id} dev=${blockDevicePath(o.id)}`);
  serveUntilSignalled(o.id, queues, store);
}

async function checks() {
  let fails = 0;
  const check = (cond, what) => {
    console.log(`${cond ? 'ok  ' : 'FAIL'} ${what}`);
    if (!cond) fails++;
  };
  const rejects = async (p, code, re, what) => {
    try {
      await p;
      check(false, `${what}: did not fail`);
    } catch (e) {
      check(isUblkSystemError(e, code) && (!re || re.test(e.message)), `${what}: ${e.code} "${e.message}"`);
    }
  };
  const features = await getFeatures();
  const size = 64 << 20;
  const store = memoryStore(size);
  const info = await addDevice({ queues: 1, depth: 16, maxIoBytes: 128 << 10, features });
  const id = info.id;
  check(info.userRecovery && info.reissue && info.nrQueues === 1 && info.queueDepth === 16, `ADD_DEV auto id -> ${id}`);
  await rejects(addDevice({ id, queues: 1, depth: 16, maxIoBytes: 128 << 10, features }), 'EEXIST',
    new RegExp(`^device id ${id} is taken$`), 'ADD_DEV of a taken id');
  await rejects(setParams(id, { sizeBytes: size, maxSectors: 100000 }), 'EINVAL', /rejected the parameters/,
    'SET_PARAMS with max_sectors above max_io_buf_bytes');
  await setParams(id, { sizeBytes: size, physicalBlockSize: 4096, volatileCache: true, fua: true,
    discard: { granularityBytes: 4096, maxDiscardSectors: 2048, maxWriteZeroesSectors: 2048 } });
  const p = await getParams(id);
  check(p.sizeBytes === size && p.logicalBlockSize === 512 && p.physicalBlockSize === 4096 &&
    p.maxSectors === 256 && p.discard?.maxDiscardSectors === 2048 && p.charDev.major > 0,
  `GET_PARAMS round trip ${JSON.stringify(p)}`);

  // START_DEV before any FETCH blocks in the kernel: it must time out, be cancelled, and never
  // stall the event loop meanwhile.
  let ticks = 0;
  const timer = setInterval(() => ticks++, 50);
  const t0 = Date.now();
  await rejects(startDevice(id, { timeoutMs: 1500 }), 'ETIMEDOUT', /START_DEV on device \d+ timed out after 1500 ms/,
    'START_DEV without queues times out');
  clearInterval(timer);
  check(ticks >= 15, `the event loop kept running during the blocked START_DEV (${ticks} ticks in ${Date.now() - t0} ms)`);

  const h = handlers(store);
  let stopped = 0;
  const queues = await openQueues({ device: info, handlers: () => ({ ...h, onStopped: () => { stopped++; } }) });
  await rejects(openQueues({ device: info, handlers: () => h, openTimeoutMs: 200 }), 'EBUSY', /is busy/,
    'a second open of the char device');
  await startDevice(id);
  check((await getDeviceInfo(id)).state === 'live', 'START_DEV with every tag fetched');

  // In-process I/O: the block device is served by this very thread while fs works on the pool.
  const fh = await openFile(blockDevicePath(id), 'r+');
  const pattern = Buffer.alloc(256 << 10);
  for (let i = 0; i < pattern.length; i++) pattern[i] = (i * 7 + 3) & 0xff;
  await fh.write(pattern, 0, pattern.length, 1 << 20);
  await fh.sync();
  const mem = Buffer.alloc(pattern.length);
  await new Promise((r) => store.read(mem, mem.length, 1 << 20, r));
  check(mem.equals(pattern), 'a write + fsync through /dev/ublkbN lands in the backend');
  await new Promise((r) => store.write(pattern, pattern.length, 8 << 20, false, r));
  const back = Buffer.alloc(pattern.length);
  await fh.read(back, 0, back.length, 8 << 20);
  check(back.equals(pattern), 'a read through /dev/ublkbN returns the backend data');
  await fh.close();
  check(stats.flushes > 0, `fsync reaches the backend as FLUSH (${stats.flushes}; ${stats.requests} requests in ${stats.batches} batches)`);

  await rejects(setParams(id, { sizeBytes: size, maxSectors: 8 }), 'EACCES', /only be set before START_DEV/, 'SET_PARAMS after START_DEV');
  await rejects(startUserRecovery(id, { timeoutMs: 300 }), 'EBUSY', /not ready for user recovery/, 'START_USER_RECOVERY on a live device');

  await stopDevice(id);
  check(stopped === 1 && queues[0].stopped, 'STOP_DEV aborts the queue (onStopped)');
  for (const q of queues) q.close();
  await deleteDevice(id);
  await rejects(getDeviceInfo(id), 'ENODEV', new RegExp(`^no ublk device with id ${id}$`), 'GET_DEV_INFO after DEL_DEV');

  const plain = await addDevice({ queues: 1, depth: 4, maxIoBytes: 64 << 10, recovery: 'none', features });
  check(!plain.userRecovery, `ADD_DEV without recovery -> ${plain.id}`);
  await rejects(recoverDevice(plain.id, { handlers: () => h }), 'EINVAL', /without user recovery/, 'recovery of a device without the flag');
  await deleteDevice(plain.id);
  console.log(`checks: ${fails} failure(s)`);
  process.exit(fails ? 1 : 0);
}

const opts = parseArgs(process.argv.slice(2));
const run = { serve, recover, checks }[opts.cmd];
if (!run) {
  console.error('usage: loop-demo.mjs serve|recover|checks [options] (see the top of the file)');
  process.exit(2);
}
run(opts).catch((e) => {
  console.error(`loop-demo: ${e.code ? e.code + ': ' : ''}${e.message}`);
  process.exit(1);
});
