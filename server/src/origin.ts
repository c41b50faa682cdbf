import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';

/** host[:port] of a URL or Host header, lower case, without the scheme's default port. */
function hostOf(text: string, scheme: string): { host: string; hostname: string } | undefined {
  try {
    const u = new URL(`${scheme}//${text}`);
    return { host: u.host.toLowerCase(), hostname: u.hostname.toLowerCase().replace(/^\[|\]$/g, '') };
  } catch {
    return undefined;
  }
}

/**
 * Why a browser's upgrade is refused, or undefined when it may go on. Clients that are not
 * browsers send no Origin and are not concerned. A browser's page may open a WebSocket to any
 * address, and a page whose name was rebound to 127.0.0.1 sends itself as both Origin and
 * Host; so a page is of this server's own site only when its origin's host:port is the Host
 * the request was sent to AND that Host names the server by address, as `localhost`, or by the
 * name it listens on. Anything else needs `--allow-origin ORIGIN` (`*` for any).
 */
export function originProblem(req: IncomingMessage, allowed: readonly string[], listenHost: string): string | undefined {
  const origin = req.headers.origin;
  if (origin === undefined) return undefined;
  if (allowed.includes('*') || allowed.includes(origin.toLowerCase().replace(/\/+$/, ''))) return undefined;
  const refused = `origin ${origin} is another site; start the server with --allow-origin ${origin} to let its pages in`;
  let o: URL;
  try {
    o = new URL(origin);
  } catch {
    return refused;
  }
  const scheme = o.protocol === 'https:' ? 'https:' : 'http:';
  const from = hostOf(o.host, scheme);
  const to = hostOf(req.headers.host ?? '', scheme);
  if (!from || !to || from.host !== to.host) return refused;
  const named = to.hostname === 'localhost' || isIP(to.hostname) !== 0 || to.hostname === listenHost.toLowerCase();
  return named ? undefined : refused;
}
