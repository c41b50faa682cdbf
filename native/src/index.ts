// @wsblk/native: ublk control and queues over io_uring, and fallocate. Nothing above this
// package touches the raw binding or the kernel's structs.
export * from './abi.js';
export * from './errors.js';
export * from './fileops.js';
export * from './sockio.js';
export * from './ublk-available.js';
export * from './ublk-control.js';
export * from './ublk-queue.js';
export * from './ublk-recovery.js';
export * from './unix-listener.js';
