// Wire constants of the wsblk protocol, version 1. Both ends import these; nothing else defines them.

/** WebSocket subprotocol; the version lives in the name so an old peer is refused at the upgrade. */
export const SUBPROTOCOL = 'wsblk.v1';
export const PROTOCOL_VERSION = 1;

/** First byte of every binary message. */
export enum Kind {
  Hello = 1,
  Welcome = 2,
  Requests = 3,
  Replies = 4,
}

/** Block operations carried by a request record. */
export enum Op {
  Read = 0,
  Write = 1,
  Flush = 2,
  Discard = 3,
  WriteZeroes = 4,
  /** One digest of CHECKSUM_DIGEST bytes per CHECKSUM_CHUNK of the range (replica compare, resync). */
  Checksum = 5,
  /** The export's membership record (replica sets), as JSON; no data when it has none. */
  MetaRead = 6,
  /** Replaces the membership record (payload: JSON), atomically and durably. */
  MetaWrite = 7,
}
export const OP_NAMES = ['READ', 'WRITE', 'FLUSH', 'DISCARD', 'WRITE_ZEROES', 'CHECKSUM', 'META_READ', 'META_WRITE'] as const;
export const OP_COUNT = OP_NAMES.length;

/** Request flags (semantic). */
export const FLAG_FUA = 1 << 0;
/** WRITE_ZEROES: keep the range allocated (do not punch a hole). */
export const FLAG_NO_UNMAP = 1 << 1;
export const REQUEST_FLAGS_MASK = FLAG_FUA | FLAG_NO_UNMAP;

/** Payload flags (transport only): the payload on the wire is lz4 block data, size-prepended. */
export const PAYLOAD_LZ4 = 1 << 0;

/** errno-style statuses in replies (Linux values, which NBD shares). */
export enum Errno {
  OK = 0,
  EPERM = 1,
  EIO = 5,
  ENOMEM = 12,
  EINVAL = 22,
  ENOSPC = 28,
  EOVERFLOW = 75,
  ENOTSUP = 95,
  ESHUTDOWN = 108,
  ETIMEDOUT = 110,
  /** A write or record from an older replica-set epoch than the export's. */
  ESTALE = 116,
}

/** WebSocket close codes (4000-4999 is the application range). */
export enum CloseCode {
  Normal = 1000,
  GoingAway = 1001,
  Malformed = 4000,
  BadHello = 4001,
  Fenced = 4002,
  ShuttingDown = 4003,
  /** The export has a live writer; the reason names it (client id and host). Final for a connect. */
  WriterBusy = 4004,
  /** The peer was silent too long: no hello in time, or no answer to keepalives. */
  Timeout = 4005,
  /** A resume whose secret does not match the session's. Final. */
  BadSecret = 4006,
}

/** Upper bounds the decoder enforces whatever the peers negotiate. */
export const LIMITS = {
  /** Largest READ/WRITE a request may carry. */
  maxPayloadCeiling: 32 << 20,
  /** Default max payload offered by the server. */
  maxPayloadDefault: 4 << 20,
  /** Records in one batch message. */
  maxRecords: 4096,
  /** Bytes of msgpack header in one batch message. */
  maxHeaderBytes: 1 << 20,
  /** Bytes of a hello/welcome message. */
  maxControlBytes: 64 << 10,
  /** Largest DISCARD / WRITE_ZEROES range in one request. */
  maxRangeBytes: 2 ** 40,
  /** Largest range one CHECKSUM request covers (its reply: 16 bytes per 64 KiB, 16 KiB). */
  maxChecksumBytes: 64 << 20,
  /** Largest membership record. */
  maxMetaBytes: 64 << 10,
} as const;

/** lz4 is kept for a payload only when it saves at least 1/8 (12.5 %). */
export const LZ4_MIN_SAVING_SHIFT = 3;
/** Payloads smaller than this are never compressed: not worth the call. */
export const LZ4_MIN_BYTES = 512;

/** CHECKSUM: bytes per digest, and the digest's size (sha256, first 16 bytes). */
export const CHECKSUM_CHUNK = 64 << 10;
export const CHECKSUM_DIGEST = 16;
