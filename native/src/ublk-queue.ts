// One ublk queue, served from this (the JS main) thread: requests arrive in batches from the
// libuv poll callback, completions go back in batches with one syscall. See csrc/ublk_queue.cc
// for why the JS thread drives the ring.
import { closeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

import { UBLK_MAX_QUEUE_DEPTH } from './abi.js';
import { binding, type RawQueue } from './binding.js';
import { errnoCode, isUblkSystemError, systemError, type UblkSystemError } from './errors.js';

const WORDS = 4; // per request in RawQueue.requests: tag, op_flags, nr_sectors, start_sector
const OP_MASK = 0xff;

/**
 * The requests of one delivery, valid only during the onRequests call (the object and its
 * storage are reused). Accessors take the index i in 0..length-1.
 */
export class UblkRequestBatch {
  /** Number of requests. */
  length = 0;

  /** @internal */
  constructor(private readonly words: Float64Array) {}

  /** The request's tag: its buffer is queue.tagBuffer(tag); complete it with queue.complete(tag, ...). */
  tag(i: number): number {
    return this.words[i * WORDS]!;
  }
  /** UBLK_IO_OP value (READ, WRITE, FLUSH, DISCARD, WRITE_ZEROES, ...). */
  op(i: number): number {
    return this.words[i * WORDS + 1]! & OP_MASK;
  }
  /** UBLK_IO_F bits (FUA, NOUNMAP, ...). */
  flags(i: number): number {
    return this.words[i * WORDS + 1]! & ~OP_MASK;
  }
  /** Byte offset on the device. */
  offset(i: number): number {
    return this.words[i * WORDS + 3]! * 512;
  }
  /** Length in bytes (for READ/WRITE the bytes in the tag buffer). */
  bytes(i: number): number {
    return this.words[i * WORDS + 2]! * 512;
  }
}

/** A command the kernel refused for one tag (never -ENODEV, which means stopped). */
export interface UblkQueueFault extends UblkSystemError {
  tag: number;
}

export interface UblkQueueHandlers {
  /**
   * Requests handed over by the kernel. Called synchronously from the event loop; copy out what
   * you need before returning. Write data is already in tagBuffer(tag); for a READ fill it, then
   * complete(tag, bytes).
   */
  onRequests(batch: UblkRequestBatch, queue: UblkQueue): void;
  /**
   * The kernel aborted the queue (-ENODEV on every tag it held): the device is stopping or being
   * torn down. Nothing more arrives; completions are dropped. Close the queue.
   */
  onStopped?(queue: UblkQueue): void;
  /** The kernel refused a FETCH or COMMIT (a bug or a dying device). Default: a process warning. */
  onFault?(fault: UblkQueueFault, queue: UblkQueue): void;
}

/** Geometry of the device whose queues are opened: a UblkDeviceInfo fits. */
export interface UblkQueueGeometry {
  id: number;
  nrQueues: number;
  /** The negotiated depth (tags per queue). */
  queueDepth: number;
  /** The negotiated maxIoBytes: each tag's buffer size. */
  maxIoBytes: number;
}

export interface OpenQueuesOptions {
  device: UblkQueueGeometry;
  /** Handlers for queue q. */
  handlers(queueId: number): UblkQueueHandlers;
  /** How long to retry opening /dev/ublkcN while it is busy (a previous daemon releasing it). */
  openTimeoutMs?: number;
}

/**
 * Opens every queue of a device: /dev/ublkcN once (its open is exclusive per device; EBUSY is
 * retried), then per queue the descriptor mapping, an io_uring and the tag buffers, and FETCHes
 * every tag. The device must exist (after ADD_DEV, or START_USER_RECOVERY when recovering).
 * Requests can arrive as soon as this resolves. On failure, queues already opened are closed.
 */
export async function openQueues(opts: OpenQueuesOptions): Promise<UblkQueue[]> {
  const d = opts.device;
  if (!Number.isInteger(d.queueDepth) || d.queueDepth < 1 || d.queueDepth > UBLK_MAX_QUEUE_DEPTH) {
    throw new RangeError(`depth must be 1..${UBLK_MAX_QUEUE_DEPTH}, got ${d.queueDepth}`);
  }
  if (!Number.isInteger(d.nrQueues) || d.nrQueues < 1) throw new RangeError(`bad nrQueues ${d.nrQueues}`);
  const fd = await openCharDevice(d.id, opts.openTimeoutMs ?? 5000);
  const queues: UblkQueue[] = [];
  try {
    for (let q = 0; q < d.nrQueues; q++) {
      queues.push(new UblkQueue(fd, d, q, opts.handlers(q)));
    }
    for (const q of queues) q.fetchAll();
    return queues;
  } catch (e) {
    for (const q of queues) q.close();
    throw e;
  } finally {
    closeSync(fd); // every queue holds its own dup
  }
}

async function openCharDevice(id: number, timeoutMs: number): Promise<number> {
  const busyDeadline = Date.now() + timeoutMs;
  const missingDeadline = Date.now() + Math.min(timeoutMs, 2000);
  for (;;) {
    try {
      return binding.openCharDevice(id);
    } catch (e) {
      // EBUSY: the previous daemon's file is not released yet; ENOENT: the node is not there yet.
      const retry = (isUblkSystemError(e, 'EBUSY') && Date.now() < busyDeadline) ||
        (isUblkSystemError(e, 'ENOENT') && Date.now() < missingDeadline);
      if (!retry) throw e;
    }
    await sleep(20);
  }
}

/**
 * The commit of staged completions runs as a reaction to this promise: a microtask, as
 * queueMicrotask() would schedule it, without the AsyncResource that Node's queueMicrotask
 * makes per call (its async-hook bookkeeping was ~5 % of the daemon's time at 4k QD1 in the VM
 * guest: bench/RESULTS.md, lever 17).
 */
const RESOLVED = Promise.resolve();

const TAG_IN_KERNEL = 0;
const TAG_HELD = 1;
const TAG_STAGED = 2;
const TAG_ABORTED = 3;

/** A ublk queue: per-tag buffers shared with the kernel, FETCH/COMMIT on an io_uring. */
export class UblkQueue {
  private readonly devId: number;
  private readonly queueId: number;
  private readonly raw: RawQueue;
  private readonly requestWords: Float64Array;
  private readonly handlers: UblkQueueHandlers;
  private readonly batch: UblkRequestBatch;
  private readonly tagViews: Buffer[];
  private readonly tagState: Uint8Array;
  private readonly commits: Int32Array;
  private staged = 0;
  private commitScheduled = false;
  private isStopped = false;
  private isClosed = false;
  private readonly flushStaged = (): void => {
    this.commitScheduled = false;
    if (!this.isClosed) this.commit();
  };

  /** @internal Use openQueues(). */
  constructor(charDevFd: number, device: UblkQueueGeometry, queueId: number,
    handlers: UblkQueueHandlers) {
    this.raw = new binding.UblkQueue(charDevFd, device.id, queueId, device.queueDepth, device.maxIoBytes,
      (n, f) => this.deliver(n, f));
    this.devId = device.id;
    this.queueId = queueId;
    this.handlers = handlers;
    this.requestWords = this.raw.requests;
    this.batch = new UblkRequestBatch(this.raw.requests);
    this.commits = this.raw.commits;
    this.tagState = new Uint8Array(device.queueDepth);
    // All tag buffers: depth * maxIoBytes bytes shared with the kernel, tag t at t * maxIoBytes.
    const buffer = Buffer.from(this.raw.buffer);
    const size = device.maxIoBytes;
    this.tagViews = [];
    for (let t = 0; t < device.queueDepth; t++) this.tagViews.push(buffer.subarray(t * size, (t + 1) * size));
  }

  /** @internal FETCH_REQ on every tag (openQueues does it). */
  fetchAll(): void {
    this.raw.fetchAll();
  }

  /** The buffer of one tag (maxIoBytes long): write data arrives here, read data goes here. */
  tagBuffer(tag: number): Buffer {
    return this.tagViews[tag]!;
  }

  /**
   * Stages the completion of a request: result is the bytes done (READ/WRITE), 0 for
   * FLUSH/DISCARD/WRITE_ZEROES, or a negative errno (e.g. -5 for EIO). Throws if the tag is not
   * held by JS (a double completion).
   */
  complete(tag: number, result: number): void {
    if (this.tagState[tag] !== TAG_HELD) {
      if (this.isStopped || this.isClosed || this.tagState[tag] === TAG_ABORTED) return;
      throw systemError('EINVAL', 22, `tag ${tag} of queue ${this.queueId} is not awaiting completion`, 'complete');
    }
    this.tagState[tag] = TAG_STAGED;
    this.commits[this.staged * 2] = tag;
    this.commits[this.staged * 2 + 1] = result;
    this.staged++;
    if (!this.commitScheduled) {
      this.commitScheduled = true;
      void RESOLVED.then(this.flushStaged);
    }
  }

  /** Submits every staged completion (COMMIT_AND_FETCH_REQ) with one syscall. Returns how many. */
  private commit(): number {
    const n = this.staged;
    if (n === 0 || this.isClosed) return 0;
    this.staged = 0;
    for (let i = 0; i < n; i++) {
      const tag = this.commits[i * 2]!;
      if (this.tagState[tag] === TAG_STAGED) this.tagState[tag] = TAG_IN_KERNEL;
    }
    if (this.isStopped) return 0;
    return this.raw.commit(n);
  }

  /** True once the kernel aborted the queue (device stopped or torn down). */
  get stopped(): boolean {
    return this.isStopped;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /**
   * Releases the ring, the descriptor mapping and /dev/ublkcN, so the device can be deleted or
   * a new daemon can recover it. On a live device this is what a daemon death looks like to the
   * kernel: with user recovery the device goes QUIESCED.
   */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.staged = 0;
    this.raw.close();
  }

  private deliver(nRequests: number, nFaults: number): void {
    if (nFaults > 0) this.handleFaults(nFaults);
    if (nRequests > 0) {
      const words = this.requestWords;
      for (let i = 0; i < nRequests; i++) this.tagState[words[i * WORDS]!] = TAG_HELD;
      this.batch.length = nRequests;
      this.handlers.onRequests(this.batch, this);
    }
  }

  private handleFaults(n: number): void {
    const faults = this.raw.faults;
    let newlyAborted = 0;
    for (let i = 0; i < n; i++) {
      const tag = faults[i * 2]!;
      const res = faults[i * 2 + 1]!;
      if (res === -19 /* ENODEV: aborted */) {
        if (this.tagState[tag] !== TAG_ABORTED) {
          this.tagState[tag] = TAG_ABORTED;
          newlyAborted++;
        }
        continue;
      }
      const fault = systemError(errnoCode(-res), -res,
        `ublk refused a command for tag ${tag} of queue ${this.queueId} on device ${this.devId}: ${errnoCode(-res)}`,
        'io_uring_cmd') as UblkQueueFault;
      fault.tag = tag;
      if (this.handlers.onFault) this.handlers.onFault(fault, this);
      else process.emitWarning(fault);
    }
    // Stopped once the kernel holds no tag of ours any more (held tags can never complete).
    if (newlyAborted > 0 && !this.isStopped && !this.tagState.includes(TAG_IN_KERNEL)) {
      this.isStopped = true;
      this.handlers.onStopped?.(this);
    }
  }
}


