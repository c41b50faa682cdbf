// What the VM benchmark (node bench/run.mjs --vm) runs, shared by the host side (bench/vm.mjs)
// and the guest side (bench/vm-guest.mjs).

/** The fio jobs of the VM mode, in the order they run; all on block devices (direct I/O). */
export const VM_JOBS = [
  { name: 'randread4k-qd1', rw: 'randread', bs: '4k', iodepth: 1, dir: 'read', metric: 'iops' },
  { name: 'randwrite4k-qd1', rw: 'randwrite', bs: '4k', iodepth: 1, dir: 'write', metric: 'iops' },
  { name: 'randread4k-qd32', rw: 'randread', bs: '4k', iodepth: 32, dir: 'read', metric: 'iops' },
  { name: 'randwrite4k-qd32', rw: 'randwrite', bs: '4k', iodepth: 32, dir: 'write', metric: 'iops' },
  { name: 'seqread1m-qd8', rw: 'read', bs: '1M', iodepth: 8, dir: 'read', metric: 'mibps' },
  { name: 'seqwrite1m-qd8', rw: 'write', bs: '1M', iodepth: 8, dir: 'write', metric: 'mibps', optional: true },
];

/** The block devices compared. */
export const VM_TARGETS = {
  ublk: 'wsblk connect (ublk /dev/ublkbN) -> ws over loopback TCP -> wsblk serve (memory)',
  'nbd-tcp': 'kernel nbd (/dev/nbdN) -> loopback TCP -> nbdkit memory',
  nbd: 'kernel nbd (/dev/nbdN) -> Unix socket -> nbdkit memory',
  'wsblk-nbd': 'kernel nbd (/dev/nbdN) -> Unix socket -> wsblk connect --nbd -> ws -> wsblk serve (memory)',
};
/**
 * The peers every other target is taken as a ratio of. nbd-tcp crosses loopback TCP, as our ws
 * does (and as any network block device does); nbd takes a Unix socket, which only works on one
 * host and costs the guest far less per request than TCP under TCG.
 */
export const BASELINES = ['nbd-tcp', 'nbd'];
export const DEFAULT_TARGETS = ['ublk', 'nbd-tcp', 'nbd'];

/** Files in the run's scratch dir ($WSBLK_VM_OUT in the guest). */
export const CONFIG_FILE = 'vm-bench-config.json';
export const RESULT_FILE = 'vm-bench-result.json';
