// Failfast requests (the kernel's REQ_FAILFAST_*: md raid1 members with --failfast, multipath,
// and every readahead, which blk-mq marks so) want an error soon rather than a wait: md then
// fails the member and serves from the others; a failed readahead is re-read when needed.
// Such a request gets a deadline; past it, the tag is completed with EIO while the transport
// may still hold the request (it replays it after a reconnect, or answers it later).
import { Errno } from '@wsblk/shared';
import type { BlockTarget, IoRequest } from '../target.js';

/**
 * Default deadline of a failfast request. Long enough for a healthy server under load (replies
 * take milliseconds) and a quick reconnect (the first retries come within a second), short
 * enough that md drops a dead member before applications notice: md fails the member at the
 * first failfast error and a bitmap resync after --re-add copies only what changed.
 */
export const FAILFAST_DEFAULT_MS = 5_000;

/**
 * One queue's failfast deadlines. Each tag has a generation: a completion (the transport's
 * answer or the deadline) counts only for the generation it was made for, so a late answer to
 * a request already failed with EIO never completes the tag's next request, nor fills its buffer.
 */
export class FailfastDeadlines {
  private readonly gen: Uint32Array;
  private readonly timers: (NodeJS.Timeout | undefined)[];

  constructor(
    depth: number,
    readonly ms: number,
    private readonly complete: (tag: number, status: number, data?: Buffer) => void,
    private readonly onExpired?: (tag: number, req: IoRequest) => void,
  ) {
    this.gen = new Uint32Array(depth);
    this.timers = new Array<NodeJS.Timeout | undefined>(depth).fill(undefined);
  }

  /**
   * Submits `req` (the tag's reusable request) to `target` under a deadline. The transport gets
   * its own copy: it keeps the request past an early completion, while the tag's object is
   * rewritten for the tag's next request.
   */
  submit(target: BlockTarget, tag: number, req: IoRequest): void {
    const g = ++this.gen[tag]!;
    const own: IoRequest = { op: req.op, offset: req.offset, length: req.length, flags: req.flags, payload: req.payload };
    this.timers[tag] = setTimeout(() => {
      if (this.gen[tag] !== g) return;
      this.end(tag);
      this.onExpired?.(tag, own);
      this.complete(tag, Errno.EIO);
    }, this.ms);
    target.submit(own, (status, data) => {
      if (this.gen[tag] !== g) return; // answered after the deadline: the tag has moved on
      this.end(tag);
      this.complete(tag, status, data);
    });
  }

  /** Forgets every pending deadline (the queues are closing): later answers are dropped. */
  clear(): void {
    for (let tag = 0; tag < this.gen.length; tag++) this.end(tag);
  }

  private end(tag: number): void {
    this.gen[tag]!++;
    clearTimeout(this.timers[tag]);
    this.timers[tag] = undefined;
  }
}
