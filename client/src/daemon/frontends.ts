import { logger } from '@wsblk/shared';
import { NbdExport } from '../nbd/index.js';
import { UblkFrontend, type UblkDeviceOptions } from '../ublk/frontend.js';
import type { FrontendFactory } from './frontend.js';
import { detachOwnDeviceMounts } from './mount-namespace.js';

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

/** The ublk frontend: a new /dev/ublkbN (or, with recoverId, a device taken over after a crash). */
export function ublkFrontend(o: UblkDeviceOptions, recover = false): FrontendFactory {
  return async (target) => {
    const fe = recover ? await UblkFrontend.recover(target, o.id, o.failfastMs) : await UblkFrontend.create(target, o);
    if (recover) detachOwnDeviceMounts(fe.device);
    return {
      kind: 'ublk',
      device: fe.device,
      get outstanding() { return fe.outstanding; },
      status: () => fe.status(),
      close: () => fe.close(),
    };
  };
}
