import { logger } from '@wsblk/shared';
import { NbdExport } from '../nbd/index.js';
import type { FrontendFactory } from './frontend.js';

const log = logger('nbd');

/** The NBD frontend: the export on a Unix socket; the device is its nbd+unix:// URI. */
export function nbdFrontend(socketPath: string): FrontendFactory {
  return async (target) => {
    const exp = new NbdExport(target, { log: (m) => log.info(m) });
    await exp.listen(socketPath);
    return {
      kind: 'nbd',
      device: `nbd+unix:///?socket=${socketPath}`,
      status: () => ({ socket: socketPath, nbdClients: exp.connectionCount }),
      close: () => exp.close(),
    };
  };
}
