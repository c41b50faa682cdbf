// The shape of errors thrown by the native layer: Node's system-error fields.
import { constants as osConstants } from 'node:os';

/** An error carrying an errno: `code` is the symbolic name ('ENOENT'), `errno` is negative. */
export interface UblkSystemError extends Error {
  code: string;
  errno: number;
  syscall?: string;
}

/** True if e is an error with an errno code (optionally a specific one, e.g. 'EBUSY'). */
export function isUblkSystemError(e: unknown, code?: string): e is UblkSystemError {
  if (!(e instanceof Error)) return false;
  const c = (e as Partial<UblkSystemError>).code;
  return typeof c === 'string' && typeof (e as Partial<UblkSystemError>).errno === 'number' &&
    (code === undefined || c === code);
}

/** An Error shaped like the native ones, for failures detected in TypeScript. */
export function systemError(code: string, errno: number, message: string, syscall?: string): UblkSystemError {
  const e = new Error(message) as UblkSystemError;
  e.code = code;
  e.errno = -Math.abs(errno);
  if (syscall) e.syscall = syscall;
  return e;
}

let errnoNames: Map<number, string> | undefined;

/** The symbolic name of a (positive) errno, as the host's libc knows it: 28 -> 'ENOSPC'. */
export function errnoCode(errno: number): string {
  errnoNames ??= new Map(Object.entries(osConstants.errno).map(([name, n]) => [n, name]));
  return errnoNames.get(Math.abs(errno)) ?? `E${Math.abs(errno)}`;
}
