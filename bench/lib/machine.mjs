// What the results JSON records about the machine and the checkout, for both bench modes.
import { execFileSync } from 'node:child_process';
import { cpus, loadavg, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The first line a command prints about its version, or null when it is not there. */
export function versionOf(cmd, args) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim().split('\n')[0];
  } catch {
    return null;
  }
}

/** Cores, memory, load, kernel, node, git HEAD, and the versions of `tools` ({name: [cmd, args]}). */
export function machineInfo(tools = {}) {
  const git = (args) => {
    try {
      return execFileSync('git', ['-C', ROOT, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return null;
    }
  };
  return {
    cores: cpus().length,
    cpuModel: cpus()[0]?.model ?? null,
    memTotalMiB: Math.round(totalmem() / 1048576),
    loadavgAtStart: loadavg(),
    kernel: versionOf('uname', ['-r']),
    node: process.version,
    ...Object.fromEntries(Object.entries(tools).map(([name, [cmd, args]]) => [name, versionOf(cmd, args)])),
    gitHead: git(['rev-parse', 'HEAD']),
    gitDirty: git(['status', '--porcelain', '--untracked-files=no']) ? true : false,
  };
}
