// Command-line options of both bench modes: node:util parseArgs, WSBLK_BENCH_<NAME> environment
// variables for options not given, and checked readers that throw UsageError (exit 2).
import { parseArgs } from 'node:util';

export class UsageError extends Error {}

/** Bytes of a size like 256M or 1G (powers of 1024). */
export const toBytes = (size) => {
  const m = /^(\d+)([KMGT]?)$/i.exec(size);
  return Number(m[1]) * 1024 ** ' KMGT'.indexOf((m[2] || ' ').toUpperCase());
};

export function readOptions(argv, options) {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options, strict: true, allowPositionals: false }));
  } catch (e) {
    throw new UsageError(e.message);
  }
  // An environment variable stands in for an option not given on the command line.
  for (const [name, spec] of Object.entries(options)) {
    const env = process.env[`WSBLK_BENCH_${name.toUpperCase().replace(/-/g, '_')}`];
    if (values[name] !== undefined || env === undefined || env === '') continue;
    values[name] = spec.type === 'boolean' ? !/^(0|false|no)$/i.test(env) : env;
  }
  const num = (name, def, { min = 0, int = false } = {}) => {
    if (values[name] === undefined) return def;
    const n = Number(values[name]);
    if (!Number.isFinite(n) || n < min || (int && !Number.isInteger(n))) throw new UsageError(`--${name} '${values[name]}' is not a ${int ? 'whole ' : ''}number >= ${min}`);
    return n;
  };
  const list = (name, all, def = all) => {
    if (!values[name]) return def;
    const want = values[name].split(',').map((s) => s.trim()).filter(Boolean);
    const bad = want.filter((w) => !all.includes(w));
    if (bad.length || !want.length) throw new UsageError(`--${name}: unknown ${bad.join(', ') || '(empty)'}; choose from ${all.join(', ')}`);
    return all.filter((a) => want.includes(a));
  };
  const size = (name, def) => {
    const v = values[name] ?? def;
    if (!/^\d+[KMGT]?$/i.test(v)) throw new UsageError(`--${name} '${v}' is not a size like 256M or 1G`);
    return v.toUpperCase();
  };
  const choice = (name, def, all) => {
    const v = values[name] ?? def;
    if (!all.includes(v)) throw new UsageError(`--${name} must be one of ${all.join(', ')}, not '${v}'`);
    return v;
  };
  return { values, num, list, size, choice };
}
