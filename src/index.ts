/** lading's library API: everything the CLI does, for programs. */
export * from './errors.js';
export * from './oci/index.js';

export type * from './content/interfaces.js';
export { isReferrerLister, isTagLister, isMounter, isDeleter } from './content/interfaces.js';
export { VerifyingStream, verified } from './content/verify.js';
export { MemoryStore } from './content/memory.js';
export { OciLayout } from './content/layout.js';
export { fetchBytes } from './content/read.js';

export { Transport, type TransportOptions, type RetryPolicy } from './remote/transport.js';
export { Repository, type RepositoryOptions } from './remote/repository.js';
export { Registry } from './remote/registry.js';
export {
  Authorizer,
  CredentialStore,
  staticCredentials,
  type Credential,
  type CredentialProvider,
} from './remote/auth/index.js';

export { copy, copyGraph, type CopyOptions, type CopyResult } from './graph/copy.js';

export { packDirectory } from './archive/pack.js';
export { extractTar, type ExtractOptions, type ExtractResult } from './archive/extract.js';

export { pushFiles, digestFile, type FileInput, type PushFilesOptions, type PushFilesResult } from './artifact/files.js';
export { pullFiles, type PullFilesOptions, type PullFilesResult } from './artifact/pull.js';
