/** `lading/server`: the registry server, for programs that embed it (kept apart from the client API). */
export { startRegistry, type StartRegistryOptions, type RunningRegistry } from './serve.js';
export { createRegistryHandler, type RegistryHandler, type RegistryHandlerOptions } from './app.js';
export { HtpasswdAuthenticator, type Authenticator, type AccessScope, type Principal } from './auth.js';
export type { TokenAuthConfig, AccessRule } from './token-auth.js';
export { RegistryStore, storageReason } from './storage/store.js';
export { FsDriver } from './storage/fs-driver.js';
export type { StorageDriver, PositionalReader } from './storage/driver.js';
export { OciError } from './errors.js';
// Embedders load user families with Families.load(dirs) and pass them as StartRegistryOptions.families.
export { Families, familyDirsFromEnv, type Family } from '../artifact/family.js';
