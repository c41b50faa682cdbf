export * from './constants.js';
export * from './errors.js';
export * from './messages.js';
export * from './codec.js';
export * from './size.js';
export * from './zero.js';
export * from './log.js';
export * from './send.js';
