export * from './target.js';
export { InflightTable, type InflightEntry } from './transport/inflight.js';
export { RemoteDisk, ConnectError, parseUrl, type RemoteDiskOptions, type TransportStats } from './transport/remote-disk.js';
