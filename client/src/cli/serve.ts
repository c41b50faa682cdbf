import { Command, Option } from 'commander';
import { logger } from '@wsblk/shared';
import type { ExportSpec } from '@wsblk/server';
import { CliError, EXIT } from './errors.js';
import { hostPortArg, sizeArg, secondsArg } from './options.js';

const log = logger('serve');

export function serveCommand(): Command {
  return new Command('serve')
    .summary('run a storage server')
    .description('Run a storage server that exports files or RAM disks over WebSocket.\n\n'
      + 'Clients connect to ws://HOST:PORT/NAME. Tokens: $WSBLK_TOKEN is valid for every export '
      + '(read-write); --token-file lists `TOKEN [EXPORT,...|*] [ro|rw]` per line. With no token at '
      + 'all, anyone who can reach the port may connect. SIGTERM/SIGINT: in-flight requests finish, '
      + 'data is flushed, then the server exits.')
    .option('--listen <host:port>', 'address to listen on', hostPortArg, { host: '127.0.0.1', port: 7690 })
    .addOption(new Option('--export <spec>', 'NAME=file:PATH[,size=SIZE][,ro][,bs=512|4096] or NAME=memory:SIZE[,ro] (repeatable); a missing file is created sparse')
      .argParser((v: string, prev: string[] = []) => [...prev, v]))
    .option('--token-file <file>', 'tokens and what each may open')
    .option('--tls-cert <file>', 'TLS certificate (PEM): serve wss://')
    .option('--tls-key <file>', 'TLS private key (PEM)')
    .option('--max-payload <size>', 'largest READ/WRITE per request', sizeArg, 4 << 20)
    .option('--session-grace <seconds>', 'how long a disconnected client may resume its session', secondsArg, 120)
    .action(async (o: {
      listen: { host: string; port: number }; export?: string[]; tokenFile?: string; tlsCert?: string; tlsKey?: string;
      maxPayload: number; sessionGrace: number;
    }) => {
      if (!o.export?.length) throw new CliError('at least one --export is needed, e.g. --export disk0=file:./disk0.img,size=1G', EXIT.USAGE);
      if (!!o.tlsCert !== !!o.tlsKey) throw new CliError('--tls-cert and --tls-key go together', EXIT.USAGE);
      if (o.maxPayload < 4096 || o.maxPayload > 32 << 20) throw new CliError('--max-payload must be from 4K to 32M', EXIT.USAGE);
      // The server is loaded only here: a `wsblk connect` daemon does not map it.
      const { StorageServer, TokenAuth, openBackend, parseExportSpec } = await import('@wsblk/server');
      const specs: ExportSpec[] = o.export.map((v) => {
        try {
          return parseExportSpec(v);
        } catch (e) {
          throw new CliError(`option '--export <spec>' argument '${v}' is invalid. ${(e as Error).message}`, EXIT.USAGE);
        }
      });
      const auth = new TokenAuth();
      if (process.env.WSBLK_TOKEN) auth.add(process.env.WSBLK_TOKEN, { exports: '*', readOnly: false });
      if (o.tokenFile) auth.loadFile(o.tokenFile);
      const server = new StorageServer({
        host: o.listen.host, port: o.listen.port, auth, maxPayload: o.maxPayload, sessionGraceMs: o.sessionGrace * 1000,
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
      const addr = await server.listen().catch((e: Error) => { throw new CliError(e.message); });
      if (auth.open && !['127.0.0.1', '::1', 'localhost'].includes(o.listen.host)) {
        log.warn(`listening on ${o.listen.host} without any token: anyone who reaches the port can read and write the exports`);
      }
      const scheme = o.tlsCert ? 'wss' : 'ws';
      log.info(`listening on ${scheme}://${addr.host.includes(':') ? `[${addr.host}]` : addr.host}:${addr.port}/ (exports: ${server.exportNames.join(', ')})`);
      await new Promise<void>((resolve) => {
        const stop = (sig: string) => {
          log.info(`${sig}: finishing in-flight requests and flushing`);
          server.close().then(resolve, (e: Error) => { log.error(e.message); resolve(); });
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
      log.info('stopped');
    });
}
