// --log-level and --log-format for commands that run a long-lived process (serve, connect).
import { Option, type Command } from 'commander';
import { LOG_FORMATS, LOG_LEVELS, setLogFormat, setLogLevel, type LogFormat, type LogLevel } from '@wsblk/shared';

const LOG_HELP = `
Logs: one record per line on stderr, at --log-level and above (default info, or $WSBLK_LOG);
--log-format json writes JSON lines {"time","level","scope","msg"} (or $WSBLK_LOG_FORMAT=json).`;

/** Adds the options (and `more` to their help); they are applied before the action runs, and exported to child processes. */
export function withLogOptions(cmd: Command, more = ''): Command {
  return cmd
    .addHelpText('after', LOG_HELP + more)
    .addOption(new Option('--log-level <level>', 'least severe log records written').choices(LOG_LEVELS))
    .addOption(new Option('--log-format <format>', 'log records as text lines or JSON lines').choices(LOG_FORMATS))
    .hook('preAction', (_cmd, action) => {
      const o = action.opts<{ logLevel?: LogLevel; logFormat?: LogFormat }>();
      // The environment carries them to a background daemon and its supervisor.
      if (o.logLevel) {
        setLogLevel(o.logLevel);
        process.env.WSBLK_LOG = o.logLevel;
      }
      if (o.logFormat) {
        setLogFormat(o.logFormat);
        process.env.WSBLK_LOG_FORMAT = o.logFormat;
      }
    });
}
