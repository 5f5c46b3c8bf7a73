export { CvvOps, type CvvOpsOptions } from './client.js';
export { CvvOpsError, type CvvOpsErrorCode, type CvvOpsErrorInit, type TokenFailureReason } from './errors.js';
export type { CvvOpsLogEntry, RequestOptions } from './http.js';
export { PagePromise } from './pagination.js';
export { TOKEN_TYP, type VerifyTokenOptions } from './tokens.js';
export { Webhooks, type ConstructEventOptions } from './webhooks.js';
export { VERSION } from './version.js';
export type * from './types.js';
export type { components, paths } from './generated/openapi.js';
