#!/usr/bin/env node
// Entry point of the wsblk CLI (compiled by `npm run build`, which `npm ci` runs via prepare).
// msgpackr's native add-on only speeds up decoding long strings, which wsblk's headers do not
// carry; without it each process maps ~4 MiB less. Set before msgpackr loads.
process.env.MSGPACKR_NATIVE_ACCELERATION_DISABLED ??= 'true';
// A daemon (connect, recover) keeps V8's young generation at its first size (see
// client/src/daemon/memory.ts): set before the CLI's modules load, whose loading could grow it.
if (process.argv[2] === 'connect' || process.argv[2] === 'recover') {
  (await import('node:v8')).setFlagsFromString('--semi-space-growth-factor=1');
}
import('../dist/cli/main.js').catch((e) => {
  process.stderr.write(`wsblk: cannot start: ${e.message}\n(run \`npm run build\` in the checkout first)\n`);
  process.exit(1);
});
