export type { HttpRequest, HttpResponse, HttpDo, Credential, CredentialProvider } from './types.js';
export { undiciHttpDo, MAX_AUTH_RESPONSE_BYTES } from './http.js';
export { parseChallenges, type Challenge } from './challenge.js';
export { parseScope, formatScope, scopeFor, mergeScopes, covers, CATALOG_SCOPE, type ParsedScope } from './scope.js';
export {
  CredentialStore,
  staticCredentials,
  defaultConfigPath,
  serverAddressFor,
  normalizeRegistryHost,
  canonicalRegistry,
  isDockerHub,
  DOCKER_HUB_SERVER,
  type CredentialStoreOptions,
} from './credentials.js';
export { Authorizer, unauthorizedError, type AuthorizerOptions } from './authorizer.js';
