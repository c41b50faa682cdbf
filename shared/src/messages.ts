import type { Op } from './constants.js';

/** Client -> server, first message of every connection. */
export interface Hello {
  version: number;
  /** Stable name of the client (host + device), for logs and the session table. */
  clientId: string;
  /**
   * Session to resume after a reconnect; absent on a first connect. After a failover it names
   * the session on the gateway left behind, unknown here: the server opens a new one.
   */
  resume?: string;
  /**
   * The session's secret (hex): sent with every hello. A new session keeps its hash; a resume
   * must send the same secret, so knowing a session id (printed by `list --json`) is not enough
   * to take a session over. Only the owning daemon has it (in its 0600 state file). The same
   * secret goes to every gateway of a device: a writer check across gateways (a lock that records
   * its hash) can tell the device's own takeover after a failover from a second writer.
   */
  secret?: string;
  /** The client's host name, to name a writer holding an export when another is refused. */
  host?: string;
  /** Attach read-only: never counted as the export's writer, coexists with it. */
  readOnly?: boolean;
  /** Take the export over from its current writer (`connect --steal`): fence it first. */
  steal?: boolean;
  /**
   * An existing device reconnecting (never a fresh connect): if another gateway holds the
   * storage's writer lock and took it for this device (the lock's record has this secret's
   * hash), this gateway fences that one and takes the lock over, as a steal. Any other holder
   * still refuses it (WriterBusy). A server without a cluster lock ignores it.
   */
  reclaim?: boolean;
  /**
   * A replica set's client: the set and epoch it writes for. The server refuses its writes once
   * the export's membership record is of another set or a newer epoch (ESTALE).
   */
  setId?: string;
  setEpoch?: number;
  /** Optional features the client can use, e.g. 'lz4'. */
  features: string[];
  /** Largest READ/WRITE payload the client will send or accept. */
  maxPayload: number;
}

/** What an export offers: its geometry, and which operations mean something on it. */
export interface ExportCaps {
  size: number;
  blockSize: number;
  readOnly: boolean;
  flush: boolean;
  fua: boolean;
  discard: boolean;
  writeZeroes: boolean;
}

/** Server -> client, answer to a hello. After it, batches flow both ways. */
export interface Welcome extends ExportCaps {
  version: number;
  exportName: string;
  /** Negotiated: the smaller of both sides' limits. */
  maxPayload: number;
  sessionId: string;
  /** Bumped on every resume; requests of older epochs are fenced. */
  epoch: number;
  /** True when the hello's session was found and resumed. */
  resumed: boolean;
  /** Lowest request sequence number not yet seen in this session: a new process that resumes
   *  the session starts numbering here, so its ids never collide with the dedup window. */
  nextSeq: number;
  /** Features both sides will use on this connection. */
  features: string[];
}

/** One block request. `seq` with the session id is the stable request id. */
export interface BlockRequest {
  seq: number;
  op: Op;
  flags: number;
  offset: number;
  length: number;
  /** WRITE data (decompressed). */
  payload?: Buffer;
}

/** Answer to one request: errno-style status, and the data of a good READ. */
export interface BlockReply {
  seq: number;
  status: number;
  data?: Buffer;
}

export type Message =
  | { kind: 'hello'; hello: Hello }
  | { kind: 'welcome'; welcome: Welcome }
  | { kind: 'requests'; requests: BlockRequest[] }
  | { kind: 'replies'; replies: BlockReply[] };
