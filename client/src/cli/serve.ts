import { existsSync, readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { parse as parseYaml } from 'yaml';
import { logger } from '@wsblk/shared';
import type { ExportSpec } from '@wsblk/server';
import { CliError, EXIT } from './errors.js';
import { hostPortArg, listenArg, sizeArg, secondsArg } from './options.js';

const log = logger('serve');

/** The faults of `--faults FILE`: a JSON or YAML list, or an object with a `faults` list. */
function faultsOfFile(file: string): unknown[] {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new CliError(`--faults ${file}: ${(e as Error).message.split('\n')[0]}`, EXIT.USAGE);
  }
  const list = Array.isArray(doc) ? doc : (doc as { faults?: unknown } | null)?.faults;
  if (!Array.isArray(list)) throw new CliError(`--faults ${file}: expected a list of faults, or {faults: [...]}`, EXIT.USAGE);
  return list;
}

const FAULTS_HELP = `
Faults (experiments): with --admin-listen, the server takes faults at run time over HTTP+JSON
(see \`wsblk fault --help\`); --faults FILE sets some before the first client. The admin
listener is on loopback unless a host is named; anywhere else it needs --admin-token-file
(every request then carries Authorization: Bearer TOKEN; on loopback the token is optional).
Every change of faults is logged (info), with who asked.`;

const METRICS_HELP = `
Metrics: with --admin-listen, GET /metrics answers Prometheus text (same token rules): per export,
requests and bytes by operation, latency histograms, errors by errno, sessions, faults set,
fenced sessions, writes refused as stale (ESTALE) and replays answered from the session window.`;

export function serveCommand(): Command {
  return new Command('serve')
    .summary('run a storage server')
    .description('Run a storage server that exports files or RAM disks over WebSocket.\n\n'
      + 'Clients connect to ws://HOST:PORT/NAME. Tokens: $WSBLK_TOKEN is valid for every export '
      + '(read-write); --token-file lists `TOKEN [EXPORT,...|*] [ro|rw]` per line. With no token at '
      + 'all, anyone who can reach the port may connect. SIGTERM, SIGINT and SIGHUP all drain: in-flight '
      + 'requests finish, data is flushed, then the server exits (SIGHUP does not reopen logs: they go to '
      + 'stderr, so rotation belongs to whatever collects stderr, e.g. journald).\n\n'
      + 'One writer per export: a client that attaches read-write while another session writes is refused, '
      + 'with the holder named, unless it asks to --steal (the old writer is fenced first). Read-only '
      + 'attaches coexist with the writer. A writer that disconnects cleanly frees the export at once; one '
      + 'whose connection was lost keeps it for --session-grace, so it can resume.\n\n'
      + 'Ceph: NAME=rbd:POOL/IMAGE serves an RBD image through librbd (loaded at run time: only these exports '
      + 'need librbd1). Several servers may export one image as gateways; its exclusive lock is the writer lock '
      + 'across all of them, and --steal blocklists the old owner before it breaks the lock, so a stale '
      + 'gateway\'s late write cannot land.\n\n'
      + 'Limits: a connection that owes more than --max-conn-buffer of replies (READ data not yet sent), or '
      + 'all of them more than --max-buffer, is not read until the client takes its replies. A connection '
      + 'that sends no hello within --hello-timeout, answers no keepalive for two --keepalive intervals, or '
      + 'stalls in the middle of a frame for --frame-timeout, is closed. A browser page of another site (its Origin is not the address it connects to) is '
      + 'refused with 403 unless --allow-origin names it.')
    .option('--listen <host:port>', 'address to listen on', hostPortArg, { host: '127.0.0.1', port: 7690 })
    .addOption(new Option('--export <spec>', 'NAME=file:PATH[,size=SIZE][,ro][,bs=512|4096], NAME=memory:SIZE[,ro] or NAME=rbd:POOL/IMAGE[,conf=FILE][,id=CLIENT][,ro] (repeatable, each NAME once); a missing file is created sparse')
      .argParser((v: string, prev: string[] = []) => [...prev, v]))
    .option('--token-file <file>', 'tokens and what each may open')
    .option('--tls-cert <file>', 'TLS certificate (PEM): serve wss://')
    .option('--tls-key <file>', 'TLS private key (PEM)')
    .option('--max-payload <size>', 'largest READ/WRITE per request', sizeArg, 4 << 20)
    .option('--session-grace <seconds>', 'how long a disconnected client may resume its session (and keep its export\'s writer lock)', secondsArg, 120)
    .addOption(new Option('--max-conn-buffer <size>', 'reply bytes one connection may owe before its requests wait')
      .argParser(sizeArg).default(64 << 20, '64M'))
    .addOption(new Option('--max-buffer <size>', 'reply bytes all connections together may owe').argParser(sizeArg).default(1 << 30, '1G'))
    .option('--hello-timeout <seconds>', 'close a connection that sends no hello this long after connecting', secondsArg, 5)
    .option('--keepalive <seconds>', 'ping every connection this often, close one silent for two intervals (0: off)', secondsArg, 10)
    .option('--frame-timeout <seconds>', 'close a connection stalled in the middle of a frame this long (0: never)', secondsArg, 30)
    .option('--admin-listen <host:port>', 'serve the admin API (faults, /metrics) on this address: PORT or HOST:PORT, loopback unless a host is named', listenArg)
    .option('--admin-token-file <file>', 'the admin API\'s bearer token (first line of the file); required off loopback')
    .option('--faults <file>', 'faults to set before serving (JSON or YAML list; see `wsblk fault --help`)')
    .addHelpText('after', FAULTS_HELP + '\n' + METRICS_HELP)
    .addOption(new Option('--allow-origin <origin>', 'let browser pages of this origin connect, e.g. https://app.example (repeatable; * = any)')
      .argParser((v: string, prev: string[] = []) => [...prev, v]))
    .action(async (o: {
      listen: { host: string; port: number }; export?: string[]; tokenFile?: string; tlsCert?: string; tlsKey?: string;
      maxPayload: number; sessionGrace: number; maxConnBuffer: number; maxBuffer: number; helloTimeout: number;
      keepalive: number; frameTimeout: number; allowOrigin?: string[];
      adminListen?: { host: string; port: number }; adminTokenFile?: string; faults?: string;
    }) => {
      if (!o.export?.length) throw new CliError('at least one --export is needed, e.g. --export disk0=file:./disk0.img,size=1G', EXIT.USAGE);
      if (!!o.tlsCert !== !!o.tlsKey) throw new CliError('--tls-cert and --tls-key go together', EXIT.USAGE);
      if (o.maxPayload < 4096 || o.maxPayload > 32 << 20) throw new CliError('--max-payload must be from 4K to 32M', EXIT.USAGE);
      if (o.maxConnBuffer < 1 << 20) throw new CliError('--max-conn-buffer must be at least 1M', EXIT.USAGE);
      if (o.maxBuffer < 1 << 20) throw new CliError('--max-buffer must be at least 1M', EXIT.USAGE);
      if (o.helloTimeout <= 0) throw new CliError('--hello-timeout must be more than 0 seconds', EXIT.USAGE);
      // Files named on the command line: say which option a missing one came from.
      for (const [flag, file] of [['--token-file', o.tokenFile], ['--tls-cert', o.tlsCert], ['--tls-key', o.tlsKey],
        ['--admin-token-file', o.adminTokenFile], ['--faults', o.faults]] as const) {
        if (file !== undefined && !existsSync(file)) throw new CliError(`${flag} ${file}: no such file`, EXIT.USAGE);
      }
      if (o.adminTokenFile && !o.adminListen) throw new CliError('--admin-token-file goes with --admin-listen', EXIT.USAGE);
      // The server is loaded only here: a `wsblk connect` daemon does not map it.
      const { StorageServer, TokenAuth, openBackend, parseExportSpec, AdminServer, addFaultRoutes, addMetricsRoutes, isLoopback } = await import('@wsblk/server');
      let adminToken: string | undefined;
      if (o.adminTokenFile) {
        adminToken = readFileSync(o.adminTokenFile, 'utf8').split('\n').map((l) => l.trim()).find((l) => l !== '');
        if (!adminToken) throw new CliError(`--admin-token-file ${o.adminTokenFile}: the file holds no token`, EXIT.USAGE);
      }
      if (o.adminListen && !adminToken && !isLoopback(o.adminListen.host)) {
        throw new CliError(`--admin-listen ${o.adminListen.host} is not loopback: give --admin-token-file too`, EXIT.USAGE);
      }
      const specs: ExportSpec[] = o.export.map((v) => {
        try {
          return parseExportSpec(v);
        } catch (e) {
          throw new CliError(`option '--export <spec>' argument '${v}' is invalid. ${(e as Error).message}`, EXIT.USAGE);
        }
      });
      const seen = new Set<string>();
      for (const spec of specs) {
        if (seen.has(spec.name)) throw new CliError(`--export ${spec.name}: the export name is given twice`, EXIT.USAGE);
        seen.add(spec.name);
      }
      const auth = new TokenAuth();
      if (process.env.WSBLK_TOKEN) auth.add(process.env.WSBLK_TOKEN, { exports: '*', readOnly: false });
      if (o.tokenFile) auth.loadFile(o.tokenFile);
      const server = new StorageServer({
        host: o.listen.host, port: o.listen.port, auth, maxPayload: o.maxPayload, sessionGraceMs: o.sessionGrace * 1000,
        maxConnBuffer: o.maxConnBuffer, maxBuffer: o.maxBuffer, helloTimeoutMs: o.helloTimeout * 1000,
        keepaliveMs: o.keepalive * 1000, frameTimeoutMs: o.frameTimeout * 1000, allowOrigins: o.allowOrigin ?? [],
        ...(o.tlsCert ? { tls: { cert: o.tlsCert, key: o.tlsKey! } } : {}),
      });
      for (const spec of specs) {
        try {
          const backend = await openBackend(spec);
          server.addExport(spec.name, backend);
          log.info(`export '${spec.name}': ${backend.description}, ${backend.info.size} bytes${backend.info.readOnly ? ', read-only' : ''}`);
        } catch (e) {
          throw new CliError(`export '${spec.name}': ${(e as Error).message}`);
        }
      }
      if (o.faults) {
        const list = faultsOfFile(o.faults);
        for (const [i, f] of list.entries()) {
          await server.faults.set(f, `--faults ${o.faults}`).catch((e: Error) => {
            throw new CliError(`--faults ${o.faults}: fault ${i + 1}: ${e.message}`, EXIT.USAGE);
          });
        }
      }
      const admin = o.adminListen
        ? addMetricsRoutes(addFaultRoutes(new AdminServer({ ...o.adminListen, token: adminToken }), server.faults), server.metrics)
        : undefined;
      if (admin) {
        const at = await admin.listen().catch((e: Error) => { throw new CliError(e.message); });
        log.info(`admin listening on http://${at.host.includes(':') ? `[${at.host}]` : at.host}:${at.port}/ (faults, metrics${adminToken ? ', token required' : ''})`);
      }
      const addr = await server.listen().catch((e: Error) => { throw new CliError(e.message); });
      if (auth.open && !['127.0.0.1', '::1', 'localhost'].includes(o.listen.host)) {
        log.warn(`listening on ${o.listen.host} without any token: anyone who reaches the port can read and write the exports`);
      }
      const scheme = o.tlsCert ? 'wss' : 'ws';
      log.info(`listening on ${scheme}://${addr.host.includes(':') ? `[${addr.host}]` : addr.host}:${addr.port}/ (exports: ${server.exportNames.join(', ')})`);
      await new Promise<void>((resolve) => {
        let stopping = false;
        const stop = (sig: string) => {
          // A second signal must not end the process before the first drain has finished.
          if (stopping) return;
          stopping = true;
          log.info(`${sig}: finishing in-flight requests and flushing`);
          Promise.all([server.close(), admin?.close()]).then(() => resolve(), (e: Error) => { log.error(e.message); resolve(); });
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
        // A hangup (the terminal went away) drains like SIGTERM; logs go to stderr, nothing to reopen.
        process.once('SIGHUP', () => stop('SIGHUP'));
      });
      log.info('stopped');
    });
}
