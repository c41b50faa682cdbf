import { logger } from '@wsblk/shared';
import { NbdExport } from '../nbd/index.js';
import type { FrontendFactory } from './frontend.js';

const log = logger('nbd');

/** The NBD frontend: the export on a Unix socket; the device is its nbd+unix:// URI. */
export function nbdFrontend(socketPath: string): FrontendFactory {
  return async (target) => {
    // Every NBD connection shares one transport, and a server FLUSH syncs the whole export, so a
    // flush on one connection covers writes acknowledged on all: multi-conn is safe.
    const exp = new NbdExport(target, { multiConn: true, log: (m) => log.info(m) });
    await exp.listen(socketPath);
    return {
      kind: 'nbd',
      device: `nbd+unix:///?socket=${socketPath}`,
      status: () => ({ socket: socketPath, nbdClients: exp.connectionCount }),
      close: () => exp.close(),
    };
  };
}
