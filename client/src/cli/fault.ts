import { readFileSync } from 'node:fs';
import { userInfo, hostname } from 'node:os';
import { Command } from 'commander';
import { parseSize } from '@wsblk/shared';
import { CliError, EXIT } from './errors.js';

const FAULT_HELP = `
Actions:
  list                      the faults set, one a line (--json: the API's list)
  set KIND [KEY=VALUE...]   set one fault (the same name again replaces it)
  clear [NAME]              clear one fault, or all of them
  crash NAME                crash the export of crash fault NAME: its unflushed writes are lost

Storage faults (per export, on the backend; export=NAME, or every export):
  delay      ms=MS [jitter=MS] [ops=read,write,...]   hold each request ms (+- jitter)
  error      [errno=EIO] [ops=...]                   fail requests with errno
  bad-range  offset=BYTES length=BYTES [errno=EIO] [ops=read,write]
                                                      fail requests that touch the range (dm-dust)
  pause      [ops=...]                               hold all I/O; 'set' returns once in-flight
                                                      requests have drained; 'clear' resumes
  crash      export=NAME                             writes stay in memory until FLUSH (a FUA write
                                                      goes through); 'crash NAME' drops them (lazyfs);
                                                      clearing it keeps them
  ops: read, write, flush, discard, writeZeroes. errno: EIO ENOSPC EPERM EINVAL ENOMEM ENOTSUP ESTALE.
Transport faults (per connection, after its welcome; Toxiproxy's toxics):
  latency    ms=MS [jitter=MS] [direction=replies|requests]   hold each message
  bandwidth  rate=BYTES/S [direction=replies|requests]       e.g. rate=1M
  blackhole                                          open, silent: no replies, no pongs, requests ignored
  reset                                              TCP reset at the next reply (requests applied)
  drop       [direction=replies|requests]            drop one direction's messages
Any fault: name=NAME export=NAME session=SESSION-ID(-PREFIX)
  client=CLIENT-ID (the hello's client id, HOST:PID for wsblk connect, as the server logs it)
  probability=0..1 (storage: per request; transport: per connection, drawn once) count=N (fires N times).

The API (what this command calls; JSON; Authorization: Bearer TOKEN when the server has one):
  GET /faults            list          POST /faults {kind, name?, export?, ...}   set
  DELETE /faults/NAME    clear one     DELETE /faults                             clear all
  POST /faults/NAME/crash              a bad request is answered 400 {"error": "one line"}

Examples:
  wsblk serve --export disk0=memory:1G --admin-listen 127.0.0.1:7691
  wsblk fault http://127.0.0.1:7691 set delay export=disk0 ms=20 jitter=5 ops=read
  wsblk fault http://127.0.0.1:7691 set blackhole client=box-b:4242 name=partition
  wsblk fault http://127.0.0.1:7691 clear partition`;

/** Values that are sizes in bytes (1M, 4K), and values that stay strings even when all digits. */
const SIZE_KEYS = new Set(['offset', 'length', 'rate']);
const STRING_KEYS = new Set(['name', 'export', 'client', 'session', 'errno', 'direction']);

/** KEY=VALUE words as the API's JSON: numbers as numbers, ops as a list. */
export function faultBody(kind: string, words: string[]): Record<string, unknown> {
  const body: Record<string, unknown> = { kind };
  for (const w of words) {
    const eq = w.indexOf('=');
    if (eq <= 0) throw new CliError(`'${w}' is not KEY=VALUE (e.g. ms=50)`, EXIT.USAGE);
    const key = w.slice(0, eq);
    const v = w.slice(eq + 1);
    if (STRING_KEYS.has(key)) body[key] = v;
    else if (key === 'ops') body.ops = v.split(',').filter((x) => x !== '');
    else if (SIZE_KEYS.has(key) && /^\d+(\.\d+)?[KMGTkmgt]?i?[Bb]?$/.test(v)) {
      try {
        body[key] = parseSize(v);
      } catch (e) {
        throw new CliError(`${key}=${v}: ${(e as Error).message}`, EXIT.USAGE);
      }
    } else if (/^-?\d+(\.\d+)?$/.test(v)) body[key] = Number(v);
    else body[key] = v;
  }
  return body;
}

/** One fault as a line: "delay-1  delay  export=disk0 ms=50  hits=3". */
function faultLine(f: Record<string, unknown>): string {
  const rest = Object.entries(f).filter(([k, v]) => !['name', 'kind', 'hits'].includes(k) && !(k === 'probability' && v === 1))
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(',') : String(v)}`);
  return `${f.name}  ${f.kind}  ${rest.join(' ')}  hits=${f.hits ?? 0}`.replace(/ {3,}/g, '  ');
}

function adminUrl(server: string): string {
  const base = /^https?:\/\//.test(server) ? server : `http://${server}`;
  try {
    return new URL(base).origin;
  } catch {
    throw new CliError(`'${server}' is not an admin address (http://HOST:PORT)`, EXIT.USAGE);
  }
}

async function call(base: string, token: string | undefined, method: string, path: string, body?: unknown): Promise<unknown> {
  const headers: Record<string, string> = { 'user-agent': `wsblk fault, ${userInfo().username}@${hostname()}` };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(base + path, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new CliError(`cannot reach the admin API at ${base}: ${cause?.code ?? cause?.message ?? (e as Error).message}`, EXIT.CONNECT);
  }
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (!res.ok) {
    const reason = (json as { error?: string } | undefined)?.error ?? text.trim();
    throw new CliError(`${method} ${path}: ${res.status} ${reason}`, res.status === 401 ? EXIT.CONNECT : EXIT.FAILURE);
  }
  return json;
}

export function faultCommand(): Command {
  return new Command('fault')
    .summary('set, list and clear faults on a server (experiments)')
    .description('Talk to a server\'s admin API (`wsblk serve --admin-listen`): list, set and clear faults at run time. '
      + 'SERVER is the admin address, e.g. http://127.0.0.1:7691.')
    .argument('<server>', 'admin address, http://HOST:PORT')
    .argument('<action>', 'list, set, clear or crash')
    .argument('[args...]', 'set: KIND [KEY=VALUE...]; clear: [NAME]; crash: NAME')
    .option('--token-file <file>', 'the admin token (first line of the file); default $WSBLK_ADMIN_TOKEN')
    .option('--json', 'print the API\'s answer as JSON')
    .addHelpText('after', FAULT_HELP)
    .action(async (server: string, action: string, args: string[], o: { tokenFile?: string; json?: boolean }) => {
      const base = adminUrl(server);
      let token = process.env.WSBLK_ADMIN_TOKEN || undefined;
      if (o.tokenFile) {
        try {
          token = readFileSync(o.tokenFile, 'utf8').split('\n').map((l) => l.trim()).find((l) => l !== '');
        } catch (e) {
          throw new CliError(`--token-file ${o.tokenFile}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`, EXIT.USAGE);
        }
      }
      const out = (json: unknown, text: string): void => void process.stdout.write(o.json ? JSON.stringify(json, null, 2) + '\n' : text);
      switch (action) {
        case 'list': {
          if (args.length) throw new CliError('list takes no arguments', EXIT.USAGE);
          const list = (await call(base, token, 'GET', '/faults')) as Array<Record<string, unknown>>;
          return out(list, list.length ? list.map((f) => faultLine(f) + '\n').join('') : 'no faults\n');
        }
        case 'set': {
          const [kind, ...words] = args;
          if (!kind) throw new CliError('set needs a KIND, e.g. set delay export=disk0 ms=50', EXIT.USAGE);
          const spec = (await call(base, token, 'POST', '/faults', faultBody(kind, words))) as Record<string, unknown>;
          return out(spec, `set ${faultLine(spec)}\n`);
        }
        case 'clear': {
          if (args.length > 1) throw new CliError('clear takes one NAME at most', EXIT.USAGE);
          const path = args[0] === undefined ? '/faults' : `/faults/${encodeURIComponent(args[0])}`;
          const r = (await call(base, token, 'DELETE', path)) as { cleared: number };
          return out(r, `cleared ${r.cleared} fault${r.cleared === 1 ? '' : 's'}\n`);
        }
        case 'crash': {
          if (args.length !== 1) throw new CliError('crash needs the NAME of a crash fault', EXIT.USAGE);
          const r = (await call(base, token, 'POST', `/faults/${encodeURIComponent(args[0]!)}/crash`)) as { writes: number; bytes: number };
          return out(r, `crashed: ${r.writes} unflushed writes lost (${r.bytes} bytes)\n`);
        }
        default:
          throw new CliError(`unknown action '${action}' (list, set, clear or crash)`, EXIT.USAGE);
      }
    });
}
