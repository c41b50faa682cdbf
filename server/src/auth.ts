import { readFileSync } from 'node:fs';

/** What a token may open. */
export interface Grant {
  /** Export names, or '*' for all. */
  exports: Set<string> | '*';
  readOnly: boolean;
}

export type AuthResult =
  | { ok: true; readOnly: boolean }
  | { ok: false; status: 401 | 403; reason: string };

/**
 * Bearer tokens checked at the HTTP upgrade. Sources: WSBLK_TOKEN (every export, read-write)
 * and a token file, one token per line: `TOKEN [EXPORT[,EXPORT...]|*] [ro|rw]`, `#` comments.
 * With no token configured at all, every client is let in.
 */
export class TokenAuth {
  private readonly grants = new Map<string, Grant>();

  get open(): boolean {
    return this.grants.size === 0;
  }

  add(token: string, grant: Grant): void {
    if (token.length < 8) throw new Error('a token must be at least 8 characters long');
    this.grants.set(token, grant);
  }

  loadFile(path: string): void {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      throw new Error(`cannot read token file ${path}: ${(e as Error).message}`);
    }
    text.split('\n').forEach((raw, i) => {
      const line = raw.replace(/#.*/, '').trim();
      if (!line) return;
      const fields = line.split(/\s+/);
      // `TOKEN ro` means read-only for every export, not an export named "ro".
      if (fields.length === 2 && (fields[1] === 'ro' || fields[1] === 'rw')) fields.splice(1, 0, '*');
      const [token, exportsField = '*', mode = 'rw', ...extra] = fields;
      if (extra.length || (mode !== 'ro' && mode !== 'rw')) {
        throw new Error(`${path}:${i + 1}: expected 'TOKEN [EXPORT,...|*] [ro|rw]'`);
      }
      try {
        this.add(token!, {
          exports: exportsField === '*' ? '*' : new Set(exportsField.split(',').filter(Boolean)),
          readOnly: mode === 'ro',
        });
      } catch (e) {
        throw new Error(`${path}:${i + 1}: ${(e as Error).message}`);
      }
    });
  }

  check(authorization: string | undefined, exportName: string): AuthResult {
    if (this.open) return { ok: true, readOnly: false };
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    if (!m) return { ok: false, status: 401, reason: 'a bearer token is required' };
    const grant = this.grants.get(m[1]!);
    if (!grant) return { ok: false, status: 401, reason: 'unknown token' };
    if (grant.exports !== '*' && !grant.exports.has(exportName)) {
      return { ok: false, status: 403, reason: `token may not open export '${exportName}'` };
    }
    return { ok: true, readOnly: grant.readOnly };
  }
}

export { readTokenFile } from '@wsblk/shared';
