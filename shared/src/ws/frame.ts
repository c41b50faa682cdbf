// The wire vocabulary of RFC 6455 that the frame reader, the frame writer and the connection share.

export const enum Opcode {
  Continuation = 0,
  Text = 1,
  Binary = 2,
  Close = 8,
  Ping = 9,
  Pong = 10,
}

/** RFC 6455 close codes this layer itself sends or reports. */
export const WS_CLOSE = { normal: 1000, protocol: 1002, noStatus: 1005, abnormal: 1006, tooBig: 1009 } as const;
