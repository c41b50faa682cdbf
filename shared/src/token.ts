// The client's token file (the server's token file, with exports and modes, is server/src/auth.ts).
import { readFileSync } from 'node:fs';

/** Reads a client token file: the first non-empty, non-comment line. */
export function readTokenFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read token file ${path}: ${(e as Error).message}`);
  }
  const line = text.split('\n').map((l) => l.replace(/#.*/, '').trim()).find(Boolean);
  if (!line) throw new Error(`token file ${path} holds no token`);
  return line.split(/\s+/)[0]!;
}
