// Native self-tests that need no ublk, for the unit tests only: they live in their own addon
// (wsblk_native_test.node), so the production addon exports none of them.
import { createRequire } from 'node:module';

/** sizeof/offsetof values of the ABI structs as compiled, the command opcodes, iod area geometry. */
export interface AbiLayout {
  sizes: Record<string, number>;
  offsets: Record<string, Record<string, number>>;
  opcodes: Record<string, number>;
  iodArea: { queue1Offset4k: number; depth128Length4k: number; depth200Length4k: number };
}

export interface UringRoundTrip {
  written: number;
  read: number;
  equal: boolean;
  ringCloexec: boolean;
  sqe128Nop: number;
}

export interface UringNopBatch {
  submitted: number;
  cqes: number;
  batches: number;
  ringCloexec: boolean;
}

interface RawTestBinding {
  abiLayout(): AbiLayout;
  uringFileRoundTrip(path: string, size: number): UringRoundTrip;
  uringNopBatch(n: number): Promise<UringNopBatch>;
  UBLK: Record<string, number>;
}

const raw: RawTestBinding = createRequire(import.meta.url)('../build/Release/wsblk_native_test.node');

export const testHooks = {
  /** sizeof/offsetof of the ABI structs as compiled, the command opcodes, iod area geometry. */
  abiLayout(): AbiLayout {
    return raw.abiLayout();
  },
  /** The ABI constants as compiled in csrc/ublk_abi.h. */
  nativeConstants(): Record<string, number> {
    return raw.UBLK;
  },
  /** WRITE then READ of `size` bytes at offset 0 of `path` through the Ring wrapper. */
  uringFileRoundTrip(path: string, size: number): UringRoundTrip {
    return raw.uringFileRoundTrip(path, size);
  },
  /** n NOPs submitted with one io_uring_enter, reaped through the eventfd + uv_poll path. */
  uringNopBatch(n: number): Promise<UringNopBatch> {
    return raw.uringNopBatch(n);
  },
};
