// Sizes on the command line: a number with an optional K, M, G or T suffix, powers of 1024
// (as qemu-img and nbdkit read them). A trailing "B" or "iB" is accepted.
const UNITS: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$/i.exec(text);
  if (!m) throw new Error(`invalid size '${text}' (expected a number with an optional K, M, G or T suffix)`);
  const value = Number(m[1]) * UNITS[m[2]!.toUpperCase()]!;
  if (!Number.isSafeInteger(value)) throw new Error(`invalid size '${text}' (not a whole number of bytes)`);
  return value;
}

export function formatSize(bytes: number): string {
  for (const [unit, mul] of [['T', 2 ** 40], ['G', 2 ** 30], ['M', 2 ** 20], ['K', 2 ** 10]] as const) {
    if (bytes >= mul && bytes % mul === 0) return `${bytes / mul}${unit}`;
  }
  return String(bytes);
}
