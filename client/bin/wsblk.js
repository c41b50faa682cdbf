#!/usr/bin/env node
// Entry point of the wsblk CLI (compiled by `npm run build`, which `npm ci` runs via prepare).
import('../dist/cli/main.js').catch((e) => {
  process.stderr.write(`wsblk: cannot start: ${e.message}\n(run \`npm run build\` in the checkout first)\n`);
  process.exit(1);
});
