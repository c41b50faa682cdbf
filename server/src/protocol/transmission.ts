import {
  FLAG_FUA, FLAG_NO_UNMAP, LIMITS, Op, OP_NAMES, bufferPool, encodeReplies, errnoName, logger, microtask,
  statusOfError, Errno, parseSetRecord, type BlockReply, type BlockRequest, type WsConn,
} from '@wsblk/shared';
import { checksumRange } from '../backend/checksum.js';
import type { SetView } from '../session/membership.js';
import type { RequestContext } from '../backend/backend.js';
import type { TransportFaults } from '../faults/fault-table.js';
import type { LinkFaults } from '../faults/link-faults.js';
import { validate } from '../backend/validate.js';
import type { Session } from '../session/session.js';
import type { Admission, ExportHandle } from './handshake.js';
import type { Debtor, ReplyBudget } from './reply-budget.js';

const log = logger('server');

/**
 * A message of replies is closed once it holds this many data bytes. Small replies still share
 * a message (up to LIMITS.maxRecords); a large READ reply ends its message, so the client gets
 * frames of one request's size, which its buffer pool reuses (bench/RESULTS.md, lever 12),
 * instead of frames of whatever mix finished in one turn (up to the client's 64 MiB limit).
 */
const MAX_REPLY_BATCH_BYTES = 256 << 10;

/**
 * The welcomed phase of a connection: requests in, through validate() to the backend, replies
 * out. The replies to one message share one message when the backend answers them in the same
 * turn (memory); otherwise the replies that complete in one turn of the event loop share one.
 * The reply bytes it owes are bounded (ReplyBudget): a READ that does not fit is held, with
 * every request behind it, and the socket is not read until they have all started.
 */
export class Transmission implements Debtor {
  private replies: BlockReply[] = [];
  private flushQueued = false;
  private running = 0;
  /** Data bytes of READs running and of replies queued, not yet handed to the socket. */
  private pendingBytes = 0;
  /** Requests waiting for budget, in order (a WRITE's payload retained). */
  private held: BlockRequest[] = [];
  private idleWaiters: Array<() => void> = [];
  /** No more replies go out (the connection closed or was fenced). */
  private stopped = false;
  private readonly session: Session;
  private readonly limits: { readOnly: boolean; maxPayload: number };
  /** The replica set this client writes for (hello, then its own META_WRITEs). */
  private set: SetView | undefined;

  constructor(
    private readonly ws: WsConn,
    private readonly exp: ExportHandle,
    private readonly admission: Admission,
    private readonly budget: ReplyBudget,
    /** A request breaks the protocol: the connection closes with this reason. */
    private readonly onViolation: (reason: string) => void,
    private readonly peer: string,
    /** The server's transport faults, and this connection's share of them. */
    private readonly faults: TransportFaults,
    private readonly link: LinkFaults,
  ) {
    this.session = admission.session;
    this.limits = { readOnly: admission.readOnly, maxPayload: admission.maxPayload };
    this.set = admission.set;
    budget.join(this);
    ws.ondrain = () => this.onSent();
  }

  /** Reply bytes left us (the socket drained, or a transport fault let held replies go). */
  onSent(): void {
    this.budget.update(this);
    this.retry();
  }

  /** Drops the replies not sent yet and the requests held; running ones finish, their replies go nowhere. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.replies = [];
    this.dropHeld();
    this.budget.leave(this);
  }

  /** Forgets the requests waiting for budget (never started: the client replays them elsewhere). */
  dropHeld(): void {
    for (const req of this.held) if (req.payload) bufferPool.release(req.payload);
    this.held = [];
    this.budget.done(this);
  }

  owed(): number {
    return this.stopped ? 0 : this.pendingBytes + this.ws.bufferedBytes + this.link.heldBytes;
  }

  /** Starts held requests while they fit; reading resumes once none is held. */
  retry(): void {
    if (this.stopped) return;
    const held = this.held;
    let i = 0;
    while (i < held.length) {
      const req = held[i]!;
      if (!this.fits(req)) break;
      i++;
      this.execute(req);
      if (this.stopped) return; // stop() released every held payload, this one's too
      if (req.payload) bufferPool.release(req.payload);
    }
    if (i > 0) held.splice(0, i);
    if (held.length === 0) {
      this.budget.done(this);
      this.ws.resumeReading('replies');
    }
  }

  /** Resolves once no request of this connection runs. */
  idle(): Promise<void> {
    if (this.running === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  receive(requests: readonly BlockRequest[]): void {
    let i = 0;
    if (this.held.length === 0) {
      for (; i < requests.length; i++) {
        const req = requests[i]!;
        if (!this.fits(req)) break;
        this.execute(req);
        if (this.stopped) return;
      }
      if (i === requests.length) return;
      this.ws.pauseReading('replies');
      this.budget.wait(this);
    }
    // The message's buffer goes back to the pool when this handler returns: keep the payloads.
    for (; i < requests.length; i++) {
      const req = requests[i]!;
      if (req.payload) bufferPool.retain(req.payload);
      this.held.push(req);
    }
  }

  /** Only READ replies carry data worth bounding; a READ past the agreed maximum is refused anyway. */
  private fits(req: BlockRequest): boolean {
    if (req.op !== Op.Read || req.length > this.limits.maxPayload) return true;
    return this.budget.fits(this, req.length);
  }

  private execute(req: BlockRequest): void {
    const session = this.session;
    const t0 = performance.now();
    if (req.seq >= session.nextSeq) session.nextSeq = req.seq + 1;
    const bad = validate(req, this.exp.backend.info, this.limits);
    if (bad) {
      log.debug(`${this.peer}: ${OP_NAMES[req.op]} ${req.offset}+${req.length}: ${errnoName(bad)}`);
      return this.answer(req, bad, t0);
    }
    if (isWriteLike(req.op) && this.exp.membership.isStale(this.set)) {
      log.warn(`${this.peer}: ${OP_NAMES[req.op]} refused: the export's replica set record is newer than this client's (${this.set!.setId.slice(0, 8)} epoch ${this.set!.epoch})`);
      this.exp.stats.staleWrites++;
      return this.answer(req, Errno.ESTALE, t0);
    }
    if (isRemembered(req.op)) {
      const known = session.recall(req.seq);
      if (known !== undefined) {
        const diff = session.replayDifference(req.seq, req.op, req.offset, req.length);
        if (diff) return this.onViolation(`replay does not match: ${diff}`);
        this.exp.stats.replayHits++;
        return this.answer(req, known, t0);
      }
    }
    const backend = this.exp.backend;
    const ctx: RequestContext = { session: session.id, epoch: this.admission.epoch, seq: req.seq };
    let p: Promise<Buffer | void>;
    switch (req.op) {
      case Op.Read: p = backend.read(ctx, req.offset, req.length); break;
      case Op.Write: p = backend.write(ctx, req.offset, req.payload!, (req.flags & FLAG_FUA) !== 0); break;
      case Op.Flush: p = backend.flush(ctx); break;
      case Op.Discard: p = backend.discard(ctx, req.offset, req.length); break;
      case Op.WriteZeroes:
        p = backend.writeZeroes(ctx, req.offset, req.length, (req.flags & FLAG_NO_UNMAP) !== 0, (req.flags & FLAG_FUA) !== 0);
        break;
      case Op.Checksum: p = checksumRange(backend, ctx, req.offset, req.length); break;
      case Op.MetaRead:
        // No record: an empty reply (a record is never empty).
        p = this.exp.membership.read().then((raw) => raw ?? undefined);
        break;
      case Op.MetaWrite:
        p = this.exp.membership.write(req.payload!).then((status) => {
          if (status !== 0) return Promise.reject(Object.assign(new Error(`membership record refused: ${errnoName(status)}`), { code: errnoName(status) }));
          this.set = parseSetRecord(req.payload!);
        });
        break;
    }
    // The payload may lie in a pooled frame that goes back when this message's handler returns:
    // hold it until the backend is done with it (a file write is still running then).
    const held = req.op === Op.Write || req.op === Op.MetaWrite ? req.payload : undefined;
    if (held) bufferPool.retain(held);
    session.begin();
    this.running++;
    if (req.op === Op.Read) {
      this.pendingBytes += req.length;
      this.budget.update(this);
    }
    p.then(
      (data) => {
        if (held) bufferPool.release(held);
        this.finish(req, 0, t0, data || undefined);
      },
      (err) => {
        if (held) bufferPool.release(held);
        log.warn(`${this.peer}: ${OP_NAMES[req.op]} ${req.offset}+${req.length} failed: ${(err as Error).message}`);
        this.finish(req, statusOfError(err), t0);
      },
    );
  }

  /** A request answered without running it (refused, or remembered); counted all the same. */
  private answer(req: BlockRequest, status: number, t0: number): void {
    this.exp.stats.done(req.op, req.length, status, (performance.now() - t0) / 1000);
    this.reply({ seq: req.seq, status });
  }

  private finish(req: BlockRequest, status: number, t0: number, data?: Buffer): void {
    this.exp.stats.done(req.op, req.length, status, (performance.now() - t0) / 1000);
    const session = this.session;
    if (isRemembered(req.op)) session.remember(req.seq, status, req.op, req.offset, req.length);
    else if (req.op === Op.Read) this.pendingBytes -= req.length;
    session.end();
    if (--this.running === 0 && this.idleWaiters.length) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const f of w) f();
    }
    this.reply(status === 0 && data ? { seq: req.seq, status, data } : { seq: req.seq, status });
  }

  private reply(rep: BlockReply): void {
    if (this.stopped) return;
    if (rep.data) this.pendingBytes += rep.data.length;
    this.replies.push(rep);
    if (!this.flushQueued) {
      this.flushQueued = true;
      microtask(this.afterReplies);
    }
  }

  /**
   * Runs once the completions queued so far in this turn have run (a microtask after them). If
   * nothing is running any more (a memory backend answers a whole message in that time) the
   * replies go now; otherwise at the end of the loop turn, with whatever else completes in it
   * (a file backend's writes finish in separate callbacks). Before, every message waited for the
   * end of the turn (a setImmediate per message: bench/RESULTS.md, lever 21).
   */
  private readonly afterReplies = (): void => {
    if (this.running === 0) this.flush();
    else setImmediate(this.flushNow);
  };

  private readonly flushNow = (): void => this.flush();

  /** Sends the queued replies now. */
  flush(): void {
    this.flushQueued = false;
    if (this.replies.length === 0 || this.stopped) return;
    const batch = this.replies;
    this.replies = [];
    // Split by data bytes too (see MAX_REPLY_BATCH_BYTES); the client accepts messages of up
    // to 64 MiB, and a whole in-flight budget of READ replies finishing in one turn would not fit.
    let start = 0;
    let bytes = 0;
    let sent = 0;
    for (let i = 0; i < batch.length; i++) {
      const n = batch[i]!.data?.length ?? 0;
      bytes += n;
      sent += n;
      if (i + 1 - start === LIMITS.maxRecords || bytes >= MAX_REPLY_BATCH_BYTES || i === batch.length - 1) {
        const parts = encodeReplies(start === 0 && i === batch.length - 1 ? batch : batch.slice(start, i + 1), this.admission.lz4);
        if (this.faults.active) this.link.send(parts);
        else this.ws.send(parts);
        start = i + 1;
        bytes = 0;
      }
    }
    this.pendingBytes -= sent;
    // The bytes moved from the queue to the socket; a READ just done may have freed room.
    this.budget.update(this);
    if (this.held.length) this.retry();
  }
}

/** Requests that change the data: fenced by the set's record. */
function isWriteLike(op: Op): boolean {
  return op === Op.Write || op === Op.Discard || op === Op.WriteZeroes;
}

/** Requests whose status the session remembers, so a replay is answered, not applied again. */
function isRemembered(op: Op): boolean {
  return op !== Op.Read && op !== Op.Checksum && op !== Op.MetaRead;
}
