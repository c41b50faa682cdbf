// Log records on stderr, one per line. Text: "2026-01-01T00:00:00.000Z info  server: listening on ...";
// JSON lines: {"time":"...","level":"info","scope":"server","msg":"listening on ..."}.
// WSBLK_LOG=debug|info|warn|error sets the level (default info), WSBLK_LOG_FORMAT=text|json the
// format; `--log-level` / `--log-format` set both (and so reach daemons started as children).
const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 } as const;
export type LogLevel = keyof typeof LEVELS;
export type LogFormat = 'text' | 'json';
export const LOG_LEVELS = Object.keys(LEVELS) as LogLevel[];
export const LOG_FORMATS: LogFormat[] = ['text', 'json'];

let threshold: number = LEVELS[(process.env.WSBLK_LOG as LogLevel) ?? 'info'] ?? LEVELS.info;
let json = process.env.WSBLK_LOG_FORMAT === 'json';

export function setLogLevel(level: LogLevel): void {
  threshold = LEVELS[level];
}

export function setLogFormat(format: LogFormat): void {
  json = format === 'json';
}

export interface Logger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
  enabled(level: LogLevel): boolean;
}

export function logger(scope: string): Logger {
  const emit = (level: LogLevel, msg: string) => {
    if (LEVELS[level] < threshold) return;
    const time = new Date().toISOString();
    process.stderr.write(json
      ? `${JSON.stringify({ time, level, scope, msg })}\n`
      : `${time} ${level.padEnd(5)} ${scope}: ${msg}\n`);
  };
  return {
    debug: (m) => emit('debug', m),
    info: (m) => emit('info', m),
    warn: (m) => emit('warn', m),
    error: (m) => emit('error', m),
    enabled: (level) => LEVELS[level] >= threshold,
  };
}
