// The NBD frontend: exposes a BlockTarget to NBD clients (qemu, nbdcopy, nbdfuse, fio, kernel
// nbd-client) on a Unix socket. Fixed newstyle, simple replies only.
//
// Choices a client can observe:
// - NBD_INFO_BLOCK_SIZE is min 1, preferred = the target's block size, max = its max payload
//   (at most 32 MiB). Min 1 puts no alignment duty on clients: qemu then sends unaligned I/O
//   as is instead of read-modify-write, and a kernel nbd-client with 512-byte sectors is served.
// - READ/WRITE up to 32 MiB (qemu's and the kernel's largest) are accepted even above the
//   advertised max, and split into target requests of at most maxPayload; above 32 MiB: EINVAL
//   (a WRITE's payload is still read and dropped, so the stream stays in step).
// - CAN_MULTI_CONN only when the caller says a flush on one connection covers all of them.
// - Zero-length READ/WRITE/TRIM/WRITE_ZEROES succeed without reaching the target.
export { NbdExport, type NbdExportOptions } from './export.js';
export { describeExport, type ExportInfo, type ExportInfoOptions } from './export-info.js';
