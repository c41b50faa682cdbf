import {
  CloseCode, Errno, FLAG_FUA, FLAG_NO_UNMAP, LIMITS, Op, OP_NAMES, PROTOCOL_VERSION, ProtocolError,
  bufferPool, decodeMessage, encodeReplies, encodeWelcome, errnoName, logger, microtask, statusOfError,
  type BlockReply, type BlockRequest, type Hello, type WsConn,
} from '@wsblk/shared';
import type { Backend } from './backend/backend.js';
import type { Session, SessionTable } from './session.js';

const log = logger('server');

/**
 * A message of replies is closed once it holds this many data bytes. Small replies still share
 * a message (up to LIMITS.maxRecords); a large READ reply ends its message, so the client gets
 * frames of one request's size, which its buffer pool reuses (bench/README.md, lever 12),
 * instead of frames of whatever mix finished in one turn (up to the client's 64 MiB limit).
 */
const MAX_REPLY_BATCH_BYTES = 256 << 10;

export interface ExportHandle {
  name: string;
  backend: Backend;
  maxPayload: number;
}

type State = 'hello' | 'fencing' | 'ready' | 'draining' | 'closed';

/**
 * One client WebSocket: hello -> (fence) -> welcome, then request batches in, reply batches out.
 * The replies to one message share one message when the backend answers them in the same turn
 * (memory); otherwise the replies that complete in one turn of the event loop share one.
 */
export class ServerConnection {
  private state: State = 'hello';
  private session: Session | undefined;
  private lz4 = false;
  private maxPayload = 0;
  private replies: BlockReply[] = [];
  private flushQueued = false;
  private running = 0;
  private idleWaiters: Array<() => void> = [];
  /** Resolves when the socket has closed. */
  readonly closed: Promise<void>;

  constructor(
    private readonly ws: WsConn,
    private readonly exp: ExportHandle,
    private readonly grantReadOnly: boolean,
    private readonly sessions: SessionTable,
    private readonly peer: string,
  ) {
    ws.onmessage = (data, isBinary) => this.onMessage(data, isBinary);
    this.closed = new Promise((resolve) => {
      ws.onclose = (code, reason) => {
        log.debug(`${peer}: closed (${code}${reason ? ' ' + reason : ''})`);
        this.onClose();
        resolve();
      };
    });
    ws.start();
  }

  /** Cuts the socket (after close() had its chance). */
  terminate(): void {
    this.ws.terminate();
  }

  /** Called by the session when a newer connection resumes it. */
  fence(): void {
    if (this.state === 'closed') return;
    log.info(`${this.peer}: fenced by a newer connection of session ${this.session?.id.slice(0, 8)}`);
    this.state = 'closed';
    this.replies = [];
    // The close handshake of a connection that may be half-open waits 1 s at most (WsConn).
    this.ws.close(CloseCode.Fenced, 'fenced by a newer connection');
  }

  /** Graceful stop (SIGTERM): stop taking requests, finish running ones, send their replies. */
  async drain(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'draining';
    await this.idle();
    this.flushReplies();
    this.ws.close(CloseCode.GoingAway, 'server shutting down');
  }

  private idle(): Promise<void> {
    if (this.running === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private closeWith(code: CloseCode, reason: string): void {
    log.warn(`${this.peer}: closing: ${reason}`);
    this.state = 'closed';
    this.ws.close(code, reason);
  }

  private onClose(): void {
    if (this.state !== 'closed') this.state = 'closed';
    if (this.session) this.sessions.release(this.session, this);
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (this.state === 'closed' || this.state === 'draining') return;
    if (!isBinary) return this.closeWith(CloseCode.Malformed, 'text messages are not part of the protocol');
    let msg;
    try {
      msg = decodeMessage(data, { maxPayload: LIMITS.maxPayloadCeiling });
    } catch (e) {
      if (e instanceof ProtocolError) return this.closeWith(CloseCode.Malformed, `malformed message: ${e.message}`);
      // A decoder bug must cost this connection, not the server (a throw here is uncaught).
      log.error(`${this.peer}: decoder failed: ${(e as Error).stack ?? e}`);
      return this.closeWith(CloseCode.Malformed, 'malformed message');
    }
    if (this.state === 'hello') {
      if (msg.kind !== 'hello') return this.closeWith(CloseCode.BadHello, `expected hello, got ${msg.kind}`);
      void this.onHello(msg.hello);
      return;
    }
    if (msg.kind !== 'requests') return this.closeWith(CloseCode.Malformed, `unexpected ${msg.kind} message`);
    if (this.state !== 'ready') return this.closeWith(CloseCode.Malformed, 'request before welcome');
    for (const req of msg.requests) this.execute(req);
  }

  private async onHello(hello: Hello): Promise<void> {
    const backend = this.exp.backend;
    let session = hello.resume ? this.sessions.find(hello.resume, this.exp.name) : undefined;
    const resumed = session !== undefined;
    if (!session) session = this.sessions.create(this.exp.name, hello.clientId);
    this.session = session;
    const epoch = session.takeOver(this);
    if (resumed) {
      // The fence: nothing of an older epoch may still be running when the replay starts.
      this.state = 'fencing';
      const t0 = Date.now();
      await session.drained();
      if (this.state !== 'fencing') return; // closed (or fenced again) while waiting
      log.info(`${this.peer}: resumed session ${session.id.slice(0, 8)} epoch ${epoch} (fence waited ${Date.now() - t0} ms)`);
    } else {
      log.info(`${this.peer}: new session ${session.id.slice(0, 8)} for '${this.exp.name}' (client ${hello.clientId})`);
    }
    this.lz4 = hello.features.includes('lz4');
    this.maxPayload = Math.min(hello.maxPayload, this.exp.maxPayload);
    const info = backend.info;
    const readOnly = info.readOnly || this.grantReadOnly;
    this.state = 'ready';
    this.ws.send([encodeWelcome({
      version: PROTOCOL_VERSION,
      exportName: this.exp.name,
      size: info.size,
      blockSize: info.blockSize,
      readOnly,
      flush: info.flush && !readOnly,
      fua: info.fua && !readOnly,
      discard: info.discard && !readOnly,
      writeZeroes: info.writeZeroes && !readOnly,
      maxPayload: this.maxPayload,
      sessionId: session.id,
      epoch,
      resumed,
      nextSeq: session.nextSeq,
      features: this.lz4 ? ['lz4'] : [],
    })]);
  }

  /** Checks a request against the export; returns an errno, or 0 when it may run. */
  private check(req: BlockRequest): number {
    const info = this.exp.backend.info;
    const readOnly = info.readOnly || this.grantReadOnly;
    const end = req.offset + req.length;
    switch (req.op) {
      case Op.Read:
        if (req.length > this.maxPayload) return Errno.EOVERFLOW;
        return end > info.size ? Errno.EINVAL : 0;
      case Op.Write:
        if (readOnly) return Errno.EPERM;
        if (req.length > this.maxPayload) return Errno.EOVERFLOW;
        return end > info.size ? Errno.ENOSPC : 0;
      case Op.Flush:
        return 0;
      case Op.Discard:
        if (readOnly) return Errno.EPERM;
        return end > info.size ? Errno.EINVAL : 0;
      case Op.WriteZeroes:
        if (readOnly) return Errno.EPERM;
        return end > info.size ? Errno.ENOSPC : 0;
      default:
        return Errno.ENOTSUP;
    }
  }

  private execute(req: BlockRequest): void {
    const session = this.session!;
    if (req.seq >= session.nextSeq) session.nextSeq = req.seq + 1;
    const bad = this.check(req);
    if (bad) {
      log.debug(`${this.peer}: ${OP_NAMES[req.op]} ${req.offset}+${req.length}: ${errnoName(bad)}`);
      return this.reply({ seq: req.seq, status: bad });
    }
    if (req.op !== Op.Read) {
      const known = session.recall(req.seq);
      if (known !== undefined) return this.reply({ seq: req.seq, status: known });
    }
    const backend = this.exp.backend;
    let p: Promise<Buffer | void>;
    switch (req.op) {
      case Op.Read: p = backend.read(req.offset, req.length); break;
      case Op.Write: p = backend.write(req.offset, req.payload!, (req.flags & FLAG_FUA) !== 0); break;
      case Op.Flush: p = backend.flush(); break;
      case Op.Discard: p = backend.discard(req.offset, req.length); break;
      case Op.WriteZeroes:
        p = backend.writeZeroes(req.offset, req.length, (req.flags & FLAG_NO_UNMAP) !== 0, (req.flags & FLAG_FUA) !== 0);
        break;
      default:
        return this.reply({ seq: req.seq, status: Errno.ENOTSUP });
    }
    // The payload may lie in a pooled frame that goes back when this message's handler returns:
    // hold it until the backend is done with it (a file write is still running then).
    const held = req.op === Op.Write ? req.payload : undefined;
    if (held) bufferPool.retain(held);
    session.begin();
    this.running++;
    p.then(
      (data) => {
        if (held) bufferPool.release(held);
        this.finish(session, req, 0, data || undefined);
      },
      (err) => {
        if (held) bufferPool.release(held);
        log.warn(`${this.peer}: ${OP_NAMES[req.op]} ${req.offset}+${req.length} failed: ${(err as Error).message}`);
        this.finish(session, req, statusOfError(err));
      },
    );
  }

  private finish(session: Session, req: BlockRequest, status: number, data?: Buffer): void {
    if (req.op !== Op.Read) session.remember(req.seq, status);
    session.end();
    if (--this.running === 0 && this.idleWaiters.length) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const f of w) f();
    }
    this.reply(status === 0 && data ? { seq: req.seq, status, data } : { seq: req.seq, status });
  }

  private reply(rep: BlockReply): void {
    if (this.state === 'closed') return;
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
   * end of the turn (a setImmediate per message: bench/README.md, lever 21).
   */
  private readonly afterReplies = (): void => {
    if (this.running === 0) this.flushReplies();
    else setImmediate(this.flushNow);
  };

  private readonly flushNow = (): void => this.flushReplies();

  private flushReplies(): void {
    this.flushQueued = false;
    if (this.replies.length === 0 || this.state === 'closed') return;
    const batch = this.replies;
    this.replies = [];
    // Split by data bytes too (see MAX_REPLY_BATCH_BYTES); the client accepts messages of up
    // to 64 MiB, and a whole in-flight budget of READ replies finishing in one turn would not fit.
    let start = 0;
    let bytes = 0;
    for (let i = 0; i < batch.length; i++) {
      bytes += batch[i]!.data?.length ?? 0;
      if (i + 1 - start === LIMITS.maxRecords || bytes >= MAX_REPLY_BATCH_BYTES || i === batch.length - 1) {
        this.ws.send(encodeReplies(start === 0 && i === batch.length - 1 ? batch : batch.slice(start, i + 1), this.lz4));
        start = i + 1;
        bytes = 0;
      }
    }
  }
}
