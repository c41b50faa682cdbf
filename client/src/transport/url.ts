// The URLs `connect` takes: ws[s]://[user:token@]host[:port]/<export>.
import { ConnectError } from './connection.js';

/**
 * A URL's credentials taken out: `ws://user:token@host/x` gives the token (the password, or the
 * user when there is no password) and the URL without them. Text that is not a URL is returned as is.
 */
export function splitCredentials(text: string): { url: string; token?: string } {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return { url: text };
  }
  if (!u.username && !u.password) return { url: text };
  const token = decodeURIComponent(u.password || u.username);
  // Cut the userinfo out of the text itself (URL would drop an explicit default port, ws://h:80/x):
  // it ends at the authority's last '@', as URL parses it.
  const start = text.indexOf('//') + 2;
  const end = text.slice(start).search(/[/?#\\]/);
  const at = text.lastIndexOf('@', end < 0 ? text.length : start + end);
  return { url: text.slice(0, start) + text.slice(at + 1), token };
}

/** The URL as text with its port always written out (URL drops a scheme's default port). */
export function withPort(url: URL): string {
  if (url.port) return url.href;
  const user = url.username ? `${url.username}${url.password ? ':' + url.password : ''}@` : '';
  return `${url.protocol}//${user}${url.hostname}:${url.protocol === 'wss:' ? 443 : 80}${url.pathname}${url.search}`;
}

/** Validates a ws[s]:// URL with an export path. */
export function parseUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConnectError(`'${text}' is not a URL (expected ws://HOST:PORT/EXPORT)`, undefined, true);
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new ConnectError(`'${text}': scheme must be ws:// or wss://`, undefined, true);
  }
  if (url.pathname.replace(/^\/+/, '') === '') {
    throw new ConnectError(`'${text}': no export name (expected ws://HOST:PORT/EXPORT)`, undefined, true);
  }
  // No port: 7690. An explicit port stays, even the scheme's default (ws://host:80/x), which
  // URL drops from url.port; wsConnect then uses the scheme's default.
  if (!url.port && !/^wss?:\/\/(?:[^@/]*@)?(?:\[[^\]]*\]|[^:/?#]*):\d+(?:[/?#]|$)/i.test(text.trim())) url.port = '7690';
  return url;
}
