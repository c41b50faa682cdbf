export * from './target.js';
export { InflightTable, type InflightEntry } from './transport/inflight.js';
export { RemoteDisk, ConnectError, parseUrl, type RemoteDiskOptions, type TransportStats } from './transport/remote-disk.js';
export { NbdExport, type NbdExportOptions } from './nbd/index.js';
export { Daemon, type DaemonOptions } from './daemon/daemon.js';
export type { Frontend, FrontendFactory } from './daemon/frontend.js';
export * from './daemon/rundir.js';
export { askControl } from './daemon/control.js';
export { tuneDaemonMemory, DAEMON_V8_FLAGS, DAEMON_TRIM_THRESHOLD } from './daemon/memory.js';
