// Native self-tests that need no ublk, for the unit tests.
import { binding, type AbiLayout, type UringNopBatch, type UringRoundTrip } from './binding.js';

export type { AbiLayout, UringNopBatch, UringRoundTrip };

export const testHooks = {
  /** sizeof/offsetof of the ABI structs as compiled, the command opcodes, iod area geometry. */
  abiLayout(): AbiLayout {
    return binding.testHooks.abiLayout();
  },
  /** The ABI constants as compiled in csrc/ublk_abi.h. */
  nativeConstants(): Record<string, number> {
    return binding.UBLK;
  },
  /** WRITE then READ of `size` bytes at offset 0 of `path` through the Ring wrapper. */
  uringFileRoundTrip(path: string, size: number): UringRoundTrip {
    return binding.testHooks.uringFileRoundTrip(path, size);
  },
  /** n NOPs submitted with one io_uring_enter, reaped through the eventfd + uv_poll path. */
  uringNopBatch(n: number): Promise<UringNopBatch> {
    return binding.testHooks.uringNopBatch(n);
  },
};
