// Every string from a run (server names, details, the scenario's text) is data: it goes into the
// report only through esc, in text and in quoted attributes alike.
const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function esc(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

/** A number for people: up to `digits` decimals, no trailing zeros; '–' when there is none. */
export function num(value: number | null | undefined, digits = 1): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–';
  return String(Number(value.toFixed(digits)));
}
