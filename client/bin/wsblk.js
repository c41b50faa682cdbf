#!/usr/bin/env node
// Entry point of the wsblk CLI (compiled by `npm run build`, which `npm ci` runs via prepare).
// msgpackr's native add-on only speeds up decoding long strings, which wsblk's headers do not
// carry; without it each process maps ~4 MiB less. Set before msgpackr loads.
process.env.MSGPACKR_NATIVE_ACCELERATION_DISABLED ??= 'true';
import('../dist/cli/main.js').catch((e) => {
  process.stderr.write(`wsblk: cannot start: ${e.message}\n(run \`npm run build\` in the checkout first)\n`);
  process.exit(1);
});
