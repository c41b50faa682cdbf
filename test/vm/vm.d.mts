// Types for vm.mjs (so TypeScript tests can import '../../vm/vm.mjs').
export declare const runScript: string;
export declare const prepareScript: string;
export declare const EXIT_TIMEOUT: 124;
export declare const EXIT_HARNESS: 125;

export declare function vmCacheDir(): string;
export declare function vmAvailable(): boolean;
export declare function vmPrepare(opts?: { quiet?: boolean }): Promise<boolean>;
export declare function vmPrepareSync(opts?: { quiet?: boolean }): boolean;

export interface RunInVmOptions {
  /** Guest lifetime limit in seconds, boot included (default 900). */
  timeoutSec?: number;
  /** Extra environment for the command (WSBLK_* and CI pass through anyway). */
  env?: Record<string, string | undefined>;
  /** Scratch dir to use and keep (the guest sees it at the same path, as WSBLK_VM_OUT). */
  scratchDir?: string;
  /** Keep the temporary scratch dir (its path is returned). */
  keep?: boolean;
  /** Guest memory, e.g. '2G'. */
  mem?: string;
  /** Guest CPUs. */
  smp?: number;
  /** Working directory of the command (default process.cwd()); must not be under /tmp. */
  cwd?: string;
  /** Also copy the guest's output to this process's stdout/stderr as it arrives. */
  echo?: boolean;
  /** Kills the guest when aborted. */
  signal?: AbortSignal;
}

export interface RunInVmResult {
  /** The command's exit status; 124 = guest killed at the timeout; 125 = harness failure. */
  code: number;
  stdout: string;
  stderr: string;
  /** The guest's full kernel log after the command ('' if the guest died early). */
  dmesg: string;
  /** The kernel log contains WARNING/BUG/Oops/Call Trace/hung-task lines. */
  kernelWarnings: boolean;
  timedOut: boolean;
  /** The scratch dir if kept (scratchDir/keep given, timeout, harness failure, kernel warnings), else null. */
  scratchDir: string | null;
}

export declare function runInVm(command: string[], opts?: RunInVmOptions): Promise<RunInVmResult>;
