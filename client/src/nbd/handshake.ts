// Fixed-newstyle option haggling for one connection: greeting, client flags, then options
// until EXPORT_NAME or a successful GO starts transmission. Pure protocol: bytes in, replies
// out through `send`; the connection owns the socket.
import type { ByteQueue } from './byte-queue.js';
import {
  CLIENT_FLAGS_KNOWN,
  EXPORT_NAME_REPLY_BYTES,
  EXPORT_NAME_ZEROES,
  FLAG_C_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  GREETING_BYTES,
  IHAVEOPT_HI,
  IHAVEOPT_LO,
  InfoType,
  MAX_OPTION_BYTES,
  NBDMAGIC_HI,
  NBDMAGIC_LO,
  OPTION_HEADER_BYTES,
  OPTION_REPLY_HEADER_BYTES,
  OPTION_REPLY_MAGIC_HI,
  OPTION_REPLY_MAGIC_LO,
  Opt,
  Rep,
} from './constants.js';
import { acceptsName, type ExportInfo } from './export-info.js';

/** What the connection does next: wait for bytes, start transmission, or drop the client. */
export type HandshakeStep = 'more' | 'transmission' | 'close';

const enum State {
  ClientFlags,
  OptionHeader,
  OptionData,
}

export class Handshake {
  private state = State.ClientFlags;
  private noZeroes = false;
  private option = 0;
  private optionLength = 0;
  private readonly scratch = Buffer.allocUnsafe(OPTION_HEADER_BYTES);
  /** Why the connection was dropped, for logs. */
  closeReason = '';

  constructor(
    private readonly exp: ExportInfo,
    private readonly send: (data: Buffer) => void,
  ) {}

  static greeting(): Buffer {
    const b = Buffer.allocUnsafe(GREETING_BYTES);
    b.writeUInt32BE(NBDMAGIC_HI, 0);
    b.writeUInt32BE(NBDMAGIC_LO, 4);
    b.writeUInt32BE(IHAVEOPT_HI, 8);
    b.writeUInt32BE(IHAVEOPT_LO, 12);
    b.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16);
    return b;
  }

  /** Parses as much as the queue holds. */
  step(q: ByteQueue): HandshakeStep {
    for (;;) {
      switch (this.state) {
        case State.ClientFlags: {
          if (q.length < 4) return 'more';
          const flags = q.take(4, this.scratch).readUInt32BE(0);
          if ((flags & ~CLIENT_FLAGS_KNOWN) !== 0) return this.drop(`unknown client flags 0x${flags.toString(16)}`);
          this.noZeroes = (flags & FLAG_C_NO_ZEROES) !== 0;
          this.state = State.OptionHeader;
          break;
        }
        case State.OptionHeader: {
          if (q.length < OPTION_HEADER_BYTES) return 'more';
          const h = q.take(OPTION_HEADER_BYTES, this.scratch);
          if (h.readUInt32BE(0) !== IHAVEOPT_HI || h.readUInt32BE(4) !== IHAVEOPT_LO) return this.drop('bad option magic');
          this.option = h.readUInt32BE(8);
          this.optionLength = h.readUInt32BE(12);
          if (this.optionLength > MAX_OPTION_BYTES) {
            // Reading it would mean buffering (or waiting for) data no valid option carries.
            if (this.option !== Opt.ExportName) {
              this.reply(Rep.ErrTooBig, message(`option data of ${this.optionLength} bytes is too large`));
            }
            return this.drop(`option ${this.option} too large (${this.optionLength} bytes)`);
          }
          this.state = State.OptionData;
          break;
        }
        case State.OptionData: {
          if (q.length < this.optionLength) return 'more';
          const data = this.optionLength === 0 ? EMPTY : q.take(this.optionLength);
          this.state = State.OptionHeader;
          const next = this.handleOption(this.option, data);
          if (next !== 'more') return next;
          break;
        }
      }
    }
  }

  private handleOption(opt: number, data: Buffer): HandshakeStep {
    switch (opt) {
      case Opt.ExportName: {
        const name = data.toString('utf8');
        if (!acceptsName(this.exp, name)) return this.drop(`unknown export ${JSON.stringify(name)}`);
        const b = Buffer.alloc(EXPORT_NAME_REPLY_BYTES + (this.noZeroes ? 0 : EXPORT_NAME_ZEROES));
        writeU64(b, this.exp.size, 0);
        b.writeUInt16BE(this.exp.flags, 8);
        this.send(b);
        return 'transmission';
      }
      case Opt.Abort:
        this.reply(Rep.Ack);
        return this.drop('client aborted the handshake');
      case Opt.List:
        if (data.length !== 0) {
          this.reply(Rep.ErrInvalid, message('NBD_OPT_LIST carries no data'));
          return 'more';
        }
        this.sendAll([this.serverReply(), optionReply(Opt.List, Rep.Ack)]);
        return 'more';
      case Opt.Info:
      case Opt.Go:
        return this.handleInfo(opt, data);
      default:
        // STARTTLS, STRUCTURED_REPLY, meta contexts, extended headers and unknown options.
        this.reply(Rep.ErrUnsup, message(`option ${opt} is not supported`));
        return 'more';
    }
  }

  private handleInfo(opt: Opt.Info | Opt.Go, data: Buffer): HandshakeStep {
    if (data.length < 6) return this.invalid(opt, 'option too short');
    const nameLength = data.readUInt32BE(0);
    if (nameLength > data.length - 6) return this.invalid(opt, 'name length exceeds the option');
    const name = data.toString('utf8', 4, 4 + nameLength);
    const count = data.readUInt16BE(4 + nameLength);
    if (data.length !== 6 + nameLength + 2 * count) return this.invalid(opt, 'information request count does not match the option length');
    if (!acceptsName(this.exp, name)) {
      this.reply(Rep.ErrUnknown, message(`no export named ${JSON.stringify(name)}`), opt);
      return 'more';
    }
    const replies: Buffer[] = [];
    let wantName = false;
    let wantDescription = false;
    for (let i = 0; i < count; i++) {
      const type = data.readUInt16BE(6 + nameLength + 2 * i);
      if (type === InfoType.Name) wantName = true;
      else if (type === InfoType.Description) wantDescription = true;
    }
    if (wantName) replies.push(this.infoString(opt, InfoType.Name, this.exp.name));
    if (wantDescription && this.exp.description !== undefined) replies.push(this.infoString(opt, InfoType.Description, this.exp.description));
    // Sent whether asked for or not (allowed); minimum 1 puts no alignment duty on clients.
    const bs = Buffer.allocUnsafe(14);
    bs.writeUInt16BE(InfoType.BlockSize, 0);
    bs.writeUInt32BE(this.exp.minBlock, 2);
    bs.writeUInt32BE(this.exp.preferredBlock, 6);
    bs.writeUInt32BE(this.exp.maxBlock, 10);
    replies.push(optionReply(opt, Rep.Info, bs));
    const ex = Buffer.allocUnsafe(12);
    ex.writeUInt16BE(InfoType.Export, 0);
    writeU64(ex, this.exp.size, 2);
    ex.writeUInt16BE(this.exp.flags, 10);
    replies.push(optionReply(opt, Rep.Info, ex));
    replies.push(optionReply(opt, Rep.Ack));
    this.sendAll(replies);
    return opt === Opt.Go ? 'transmission' : 'more';
  }

  private serverReply(): Buffer {
    const name = Buffer.from(this.exp.name, 'utf8');
    const b = Buffer.allocUnsafe(4 + name.length);
    b.writeUInt32BE(name.length, 0);
    name.copy(b, 4);
    return optionReply(Opt.List, Rep.Server, b);
  }

  private infoString(opt: number, type: InfoType, text: string): Buffer {
    const s = Buffer.from(text, 'utf8');
    const b = Buffer.allocUnsafe(2 + s.length);
    b.writeUInt16BE(type, 0);
    s.copy(b, 2);
    return optionReply(opt, Rep.Info, b);
  }

  private invalid(opt: number, why: string): HandshakeStep {
    this.reply(Rep.ErrInvalid, message(why), opt);
    return 'more';
  }

  private reply(type: Rep, data?: Buffer, opt = this.option): void {
    this.send(optionReply(opt, type, data));
  }

  private sendAll(parts: Buffer[]): void {
    this.send(parts.length === 1 ? parts[0]! : Buffer.concat(parts));
  }

  private drop(reason: string): HandshakeStep {
    this.closeReason = reason;
    return 'close';
  }
}

const EMPTY = Buffer.alloc(0);

function message(text: string): Buffer {
  return Buffer.from(text, 'utf8');
}

function optionReply(opt: number, type: Rep, data?: Buffer): Buffer {
  const n = data ? data.length : 0;
  const b = Buffer.allocUnsafe(OPTION_REPLY_HEADER_BYTES + n);
  b.writeUInt32BE(OPTION_REPLY_MAGIC_HI, 0);
  b.writeUInt32BE(OPTION_REPLY_MAGIC_LO, 4);
  b.writeUInt32BE(opt >>> 0, 8);
  b.writeUInt32BE(type >>> 0, 12);
  b.writeUInt32BE(n, 16);
  if (data) data.copy(b, OPTION_REPLY_HEADER_BYTES);
  return b;
}

/** Writes a non-negative safe integer as a big-endian u64 without BigInt. */
export function writeU64(b: Buffer, value: number, at: number): void {
  b.writeUInt32BE(Math.floor(value / 0x1_0000_0000), at);
  b.writeUInt32BE(value >>> 0, at + 4);
}
