export type { Backend, BackendInfo, RequestContext } from './backend/backend.js';
export { MemoryBackend } from './backend/memory.js';
export { FileBackend, type FileBackendOptions } from './backend/file.js';
export { delayFilter, type FilterMatch } from './backend/delay.js';
export { parseExportSpec, openBackend, type ExportSpec } from './exports.js';
export { TokenAuth, readTokenFile, type Grant } from './auth.js';
export { Session } from './session/session.js';
export { SessionTable } from './session/session-table.js';
export { StorageServer, type StorageServerOptions } from './server.js';
