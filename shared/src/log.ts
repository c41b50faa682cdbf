// One-line log records on stderr: "2026-01-01T00:00:00.000Z info  server: listening on ...".
// WSBLK_LOG=debug|info|warn|error sets the level (default info).
const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 } as const;
export type LogLevel = keyof typeof LEVELS;

let threshold: number = LEVELS[(process.env.WSBLK_LOG as LogLevel) ?? 'info'] ?? LEVELS.info;

export function setLogLevel(level: LogLevel): void {
  threshold = LEVELS[level];
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
    process.stderr.write(`${new Date().toISOString()} ${level.padEnd(5)} ${scope}: ${msg}\n`);
  };
  return {
    debug: (m) => emit('debug', m),
    info: (m) => emit('info', m),
    warn: (m) => emit('warn', m),
    error: (m) => emit('error', m),
    enabled: (level) => LEVELS[level] >= threshold,
  };
}
