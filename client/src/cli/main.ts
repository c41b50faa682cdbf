#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { connectCommand } from './connect.js';
import { disconnectCommand } from './disconnect.js';
import { faultCommand } from './fault.js';
import { labCommand } from './lab.js';
import { CliError, EXIT, EXIT_CODES_HELP } from './errors.js';
import { listCommand } from './list.js';
import { withLogOptions } from './log-options.js';
import { recoverCommand } from './recover.js';
import { replicaCommand } from './replica.js';
import { serveCommand } from './serve.js';
import { statsCommand } from './stats.js';
import { verifyCommand } from './verify.js';

// A reader that went away (`wsblk --help | head -1`, `wsblk list | true`) is not our error:
// what is left of the output is dropped. A foreground daemon whose stdout reader is gone keeps
// serving its device.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
});

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

const program = new Command('wsblk')
  .description('A remote disk over WebSocket, as a local block device (ublk) or NBD export.')
  .version(pkg.version)
  .addHelpText('after', EXIT_CODES_HELP)
  .showSuggestionAfterError()
  .exitOverride();

// The long-lived commands take --log-level/--log-format (listed after their own options).
const DAEMON_LOG = '\nA background daemon logs to <id>.log in the run directory; --foreground logs to stderr.';
for (const cmd of [withLogOptions(serveCommand()), withLogOptions(connectCommand(), DAEMON_LOG), disconnectCommand(), listCommand(), recoverCommand(), replicaCommand(), statsCommand(), verifyCommand(), faultCommand(), labCommand()]) {
  program.addCommand(cmd.exitOverride().addHelpText('after', EXIT_CODES_HELP));
}

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    // Help and version exit 0; every parse error is a usage error (commander printed it).
    process.exitCode = e.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
  } else {
    const err = e as Error;
    process.stderr.write(`wsblk: ${err.message}\n`);
    process.exitCode = e instanceof CliError ? e.exitCode : EXIT.FAILURE;
  }
}
