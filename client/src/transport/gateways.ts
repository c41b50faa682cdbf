// Which server to try, when an export has several gateways (connect URL --failover URL2 ...).

/**
 * The gateways of one export, the first the primary, and the one the session lives on. A round
 * of tries starts there (the session can resume there, its dedup window answers replays, and
 * the store's writer lock need not move), then goes through the others in list order. The
 * device stays where it lands: no fail-back to the primary while the current gateway answers.
 */
export class Gateways {
  private readonly urls: string[];
  private at: number;
  /** Times the session moved to another gateway. */
  moves = 0;

  /** `urls`: the primary first; `current`: the gateway a session to resume lives on (default: the primary). */
  constructor(urls: readonly string[], current?: string) {
    this.urls = urls.filter((u, i) => urls.indexOf(u) === i);
    this.at = Math.max(0, current === undefined ? 0 : this.urls.indexOf(current));
  }

  get current(): string {
    return this.urls[this.at]!;
  }

  get count(): number {
    return this.urls.length;
  }

  /** One round's order: the current gateway, then the others as listed. */
  round(): string[] {
    return [this.current, ...this.urls.filter((_, i) => i !== this.at)];
  }

  /** A welcome came from `url`: it is the current gateway now. True when that is a move. */
  arrivedAt(url: string): boolean {
    const i = this.urls.indexOf(url);
    if (i < 0 || i === this.at) return false;
    this.at = i;
    this.moves++;
    return true;
  }
}
