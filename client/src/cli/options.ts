import { InvalidArgumentError } from 'commander';
import { parseSize } from '@wsblk/shared';
import { parseUrl, splitCredentials, withPort } from '../transport/url.js';
import { CliError, EXIT } from './errors.js';

/** commander argument parsers that turn bad values into one clear usage error. */
export function sizeArg(value: string): number {
  try {
    return parseSize(value);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

export function secondsArg(value: string): number {
  const n = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value.trim()) || !Number.isFinite(n)) throw new InvalidArgumentError(`'${value}' is not a number of seconds`);
  return n;
}

export function intArg(min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || n < min || n > max) throw new InvalidArgumentError(`'${value}' is not a whole number from ${min} to ${max}`);
    return n;
  };
}

export function hostPortArg(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*))(?::(\d+))?$/.exec(value);
  const port = m?.[3] === undefined ? 7690 : Number(m[3]);
  if (!m || port > 65535) throw new InvalidArgumentError(`'${value}' is not HOST:PORT`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

/** A side listener (`--admin-listen`, `--metrics-listen`): HOST:PORT, `:PORT` or `PORT`; loopback unless a host is named. */
export function listenArg(value: string): { host: string; port: number } {
  if (/^:?\d+$/.test(value.trim())) {
    const port = Number(value.trim().replace(':', ''));
    if (port > 65535) throw new InvalidArgumentError(`'${value}' is not HOST:PORT`);
    return { host: '127.0.0.1', port };
  }
  if (!/:\d+$/.test(value)) throw new InvalidArgumentError(`'${value}' needs a port: HOST:PORT`);
  return hostPortArg(value);
}

export function blockSizeArg(value: string): 512 | 4096 {
  if (value.trim() !== '512' && value.trim() !== '4096') throw new InvalidArgumentError(`'${value}' is not 512 or 4096`);
  return Number(value) as 512 | 4096;
}

/**
 * A target URL from the command line: ws[s]://HOST[:PORT]/EXPORT with the default port filled
 * in, and the token it carries (ws://:TOKEN@HOST/...) apart, so the URL can be shown. A bad
 * URL is a usage error.
 */
export function targetUrlArg(text: string): { url: string; token: string | undefined } {
  const plain = splitCredentials(text);
  try {
    return { url: withPort(parseUrl(plain.url)), token: plain.token };
  } catch (e) {
    throw new CliError((e as Error).message, EXIT.USAGE);
  }
}
