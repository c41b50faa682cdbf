/** Exit codes of the wsblk CLI (documented in `wsblk --help` and the README). */
export const EXIT = {
  OK: 0,
  /** Something failed at run time (I/O, a daemon that died, a full disk). */
  FAILURE: 1,
  /** Bad command line: unknown option, bad value. */
  USAGE: 2,
  /** The server could not be reached, or refused us (token, export). */
  CONNECT: 3,
  /** No such device. */
  NO_DEVICE: 4,
} as const;

/** An error that becomes one line on stderr and a given exit code. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode: number = EXIT.FAILURE) {
    super(message);
  }
}

export const EXIT_CODES_HELP = `
Exit codes:
  0  success
  1  failure at run time
  2  bad command line
  3  server unreachable or refused the connection (token, export, another writer)
  4  no such device`;
