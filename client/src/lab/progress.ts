// The progress line on stderr while a lab run goes: redrawn in place on a terminal, a line
// every 5 s otherwise (a log keeps a readable trace).
import type { LabSample } from './results.js';

export interface ProgressView {
  elapsedS: number;
  durationS: number;
  phase: string;
  sample: LabSample | undefined;
  next: { atS: number; text: string } | undefined;
}

export function progressLine(v: ProgressView): string {
  const s = v.sample;
  const iops = s ? `${s.readIops + s.writeIops} IOPS` : '- IOPS';
  const reps = s && s.replicas.length > 0
    ? s.replicas.map((r) => `${r.name} ${r.state}${r.resyncPercent !== undefined ? ` ${r.resyncPercent}%` : ''}`).join(', ')
    : 'replicas -';
  const next = v.next ? `next: ${v.next.text} at ${v.next.atS} s` : 'no more actions';
  return `lab: ${v.elapsedS.toFixed(0).padStart(3)}/${v.durationS} s  ${v.phase}  ${iops}  ${reps}  ${next}`;
}

export class Progress {
  private timer: NodeJS.Timeout | undefined;
  private lastPrinted = 0;
  private drawn = false;

  constructor(private readonly view: () => ProgressView, private readonly out: NodeJS.WriteStream = process.stderr) {}

  start(): void {
    this.timer = setInterval(() => this.draw(), 1000);
  }

  draw(): void {
    const line = progressLine(this.view());
    if (this.out.isTTY) {
      this.out.write(`\r${line.slice(0, (this.out.columns || 200) - 1)}\x1b[K`);
      this.drawn = true;
    } else if (Date.now() - this.lastPrinted >= 5000) {
      this.out.write(`${line}\n`);
      this.lastPrinted = Date.now();
    }
  }

  /** Stops redrawing; a drawn line is ended so what follows starts on its own line. */
  stop(): void {
    clearInterval(this.timer);
    if (this.drawn) this.out.write('\n');
    this.drawn = false;
  }
}
