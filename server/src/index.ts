export type { Backend, BackendInfo } from './backend/backend.js';
export { MemoryBackend } from './backend/memory.js';
export { FileBackend, type FileBackendOptions } from './backend/file.js';
export { delayFilter, type FilterMatch } from './backend/delay.js';
export { parseExportSpec, openBackend, type ExportSpec } from './exports.js';
export { TokenAuth, readTokenFile, type Grant } from './auth.js';
export { Session, SessionTable } from './session.js';
export { StorageServer, type StorageServerOptions } from './server.js';
