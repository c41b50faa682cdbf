import { parseSize } from '@wsblk/shared';
import type { Backend } from './backend/backend.js';
import { FileBackend } from './backend/file.js';
import { MemoryBackend } from './backend/memory.js';
import { RbdBackend } from './backend/rbd.js';

/** One `--export` argument, parsed. */
export interface ExportSpec {
  name: string;
  kind: 'file' | 'memory' | 'rbd';
  path?: string;
  /** rbd: the pool, the image, the ceph.conf and the cephx user (without "client."). */
  pool?: string;
  image?: string;
  conf?: string;
  id?: string;
  size?: number;
  readOnly: boolean;
  blockSize: number;
}

const NAME_RE = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * Parses `NAME=file:PATH[,size=SIZE][,ro][,bs=512|4096]`, `NAME=memory:SIZE[,ro][,bs=...]` or
 * `NAME=rbd:POOL/IMAGE[,conf=FILE][,id=CLIENT][,ro][,bs=...]`.
 * Throws an Error whose message is fit for one line on stderr.
 */
export function parseExportSpec(text: string): ExportSpec {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new Error(`--export '${text}': expected NAME=file:PATH[,size=SIZE][,ro] or NAME=memory:SIZE`);
  const name = text.slice(0, eq);
  if (!NAME_RE.test(name)) throw new Error(`--export '${text}': export name must be 1-64 of A-Z a-z 0-9 . _ -`);
  const rest = text.slice(eq + 1);
  const colon = rest.indexOf(':');
  const kind = colon < 0 ? rest : rest.slice(0, colon);
  const [main = '', ...opts] = colon < 0 ? [] : rest.slice(colon + 1).split(',');
  const spec: ExportSpec = { name, kind: 'memory', readOnly: false, blockSize: 512 };
  if (kind === 'file') {
    if (!main) throw new Error(`--export '${text}': file: needs a path`);
    spec.kind = 'file';
    spec.path = main;
  } else if (kind === 'memory') {
    if (!main) throw new Error(`--export '${text}': memory: needs a size, e.g. memory:1G`);
    spec.size = parseSize(main);
  } else if (kind === 'rbd') {
    const m = /^([^/]+)\/([^/]+)$/.exec(main);
    if (!m) throw new Error(`--export '${text}': rbd: needs POOL/IMAGE, e.g. rbd:rbd/disk0`);
    spec.kind = 'rbd';
    spec.pool = m[1];
    spec.image = m[2];
  } else {
    throw new Error(`--export '${text}': unknown backend '${kind}' (file or memory) — Ceph images: rbd:POOL/IMAGE`);
  }
  for (const o of opts) {
    const [k, v] = o.split('=', 2) as [string, string | undefined];
    if (k === 'ro' && v === undefined) spec.readOnly = true;
    else if (k === 'rw' && v === undefined) spec.readOnly = false;
    else if (k === 'size' && v && spec.kind === 'file') spec.size = parseSize(v);
    else if (k === 'conf' && v && spec.kind === 'rbd') spec.conf = v;
    else if (k === 'id' && v && spec.kind === 'rbd') spec.id = v;
    else if ((k === 'bs' || k === 'block-size') && (v === '512' || v === '4096')) spec.blockSize = Number(v);
    else throw new Error(`--export '${text}': unknown option '${o}' (${spec.kind === 'rbd' ? 'conf=FILE, id=CLIENT' : 'size=SIZE for files'}, ro, bs=512|4096)`);
  }
  if (spec.size !== undefined && (spec.size === 0 || spec.size % spec.blockSize !== 0)) {
    throw new Error(`--export '${text}': size must be a non-zero multiple of the block size ${spec.blockSize}`);
  }
  return spec;
}

export async function openBackend(spec: ExportSpec): Promise<Backend> {
  if (spec.kind === 'rbd') {
    return RbdBackend.open({ pool: spec.pool!, image: spec.image!, conf: spec.conf, id: spec.id, readOnly: spec.readOnly, blockSize: spec.blockSize });
  }
  if (spec.kind === 'memory') return new MemoryBackend(spec.size!, { readOnly: spec.readOnly, blockSize: spec.blockSize });
  return FileBackend.open(spec.path!, { size: spec.size, readOnly: spec.readOnly, blockSize: spec.blockSize });
}
