// The daemon's control socket: one JSON request per line, one JSON answer per line.
// `wsblk list` and `wsblk stats` ask {"cmd":"status"}; `wsblk disconnect` asks {"cmd":"disconnect"};
// {"cmd":"metrics"} answers {"metrics": PROMETHEUS_TEXT}.
import { createConnection, createServer, type Server } from 'node:net';
import { rmSync } from 'node:fs';

export type ControlRequest = { cmd: 'status' } | { cmd: 'metrics' } | { cmd: 'disconnect' } | { cmd: 'replica-add' | 'replica-remove'; url: string };
export type ControlHandler = (req: ControlRequest) => Promise<unknown>;

export function serveControl(path: string, handler: ControlHandler): Promise<Server> {
  rmSync(path, { force: true });
  const server = createServer((sock) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => {});
    sock.on('data', (d: string) => {
      buf += d;
      if (buf.length > 4096) return sock.destroy();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      let req: ControlRequest;
      try {
        req = JSON.parse(buf.slice(0, nl)) as ControlRequest;
      } catch {
        sock.end(JSON.stringify({ error: 'bad request' }) + '\n');
        return;
      }
      handler(req).then(
        (res) => sock.end(JSON.stringify(res ?? {}) + '\n'),
        (err: Error) => sock.end(JSON.stringify({ error: err.message }) + '\n'),
      );
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve(server));
  });
}

/** Sends one request; rejects on no answer within timeoutMs. */
export function askControl<T = Record<string, unknown>>(path: string, req: ControlRequest, timeoutMs = 2000): Promise<T> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buf = '';
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`no answer on ${path}`)); }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(JSON.stringify(req) + '\n'));
    sock.on('data', (d: string) => { buf += d; });
    sock.on('error', (err) => { clearTimeout(timer); reject(err); });
    sock.on('end', () => {
      clearTimeout(timer);
      try {
        const res = JSON.parse(buf) as T & { error?: string };
        if (res.error) reject(new Error(res.error)); else resolve(res);
      } catch {
        reject(new Error(`bad answer on ${path}`));
      }
    });
  });
}
