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
export { extract, extractTar, type ExtractOptions, type ExtractResult, type RefusedEntry } from './archive/extract.js';

export { pushFiles, digestFile, type FileInput, type PushFilesOptions, type PushFilesResult } from './artifact/files.js';
export { pullFiles, type PullFilesOptions, type PullFilesResult } from './artifact/pull.js';

export {
  API_VERSION,
  Families,
  describeFamily,
  familyDirsFromEnv,
  readFamilyFile,
  type Family,
  type SchemaIssue,
} from './artifact/family.js';
export { checkEnvelope, decodeEnvelope, encodeEnvelope, envelopeIssues, parseEnvelopeText, readEnvelopeFile, type Envelope, type EnvelopeMetadata } from './artifact/envelope.js';
export { canonicalJson, canonicalJsonBytes } from './artifact/canonical.js';
export { pushTyped, pullTyped, readTyped, ENVELOPE_FILE, type PushTypedOptions, type PushTypedResult, type PullTypedOptions, type PullTypedResult } from './artifact/typed.js';
export { formatVariant, listVariants, parseVariantArgs, selectVariant, variantOf, VARIANT_ANNOTATION_PREFIX, type VariantSelector } from './artifact/variants.js';
export { resolveBundle, flattenPlan, renderPlan, type Opener, type PlanNode, type PlanVariant } from './artifact/bundle.js';
export {
  checkFrozen,
  checkFrozenPlan,
  lockEntriesFromPlan,
  lockKey,
  readLockfile,
  requireLockfile,
  updateLockfile,
  writeLockfile,
  LOCKFILE_NAME,
  type LockEntry,
  type Lockfile,
} from './install/lockfile.js';

export * from './trust/types.js';
export { generateKeyPair, keyId, loadPrivateKey, loadPublicKey, signBytes } from './trust/keys.js';
export { parseBundle, messageSignatureBundle, dsseBundle, bundleKind, MAX_BUNDLE_BYTES, type Bundle } from './trust/bundle.js';
export { pae, inTotoStatement, parseStatement, type ParsedStatement, type StatementSubject } from './trust/dsse.js';
export { simpleSigningPayload, parseSimpleSigning, legacyLayerToBundle, matchDockerReference, checkSimpleSigningSubject } from './trust/legacy.js';
export { loadTrustedRoot, parseTrustedRoot, defaultTrustedRoot } from './trust/trusted-root.js';
export { matchIdentity, checkIdentityMatcher } from './trust/identity.js';
export { verifyBundle, signatureCheck, type ArtifactInput, type BundleVerification } from './trust/verify-bundle.js';
export { signManifest, attestManifest, attachBundle, legacySignatureTag, SIGNATURE_KEY_ANNOTATION, type SignOptions, type SignResult, type AttestOptions } from './trust/attach.js';
export { verifyManifestSignatures, verifyManifestAttestations, MAX_SIGNATURES, type VerifyOptions, type VerificationReport, type AttestationCheck } from './trust/verify-artifact.js';
export { discoverReferrers, renderReferrerTree, type ReferrerNode, type DiscoverOptions } from './trust/discover.js';
export { verifyUnderPolicy, adHocPolicy, type EnforceOptions } from './trust/enforce.js';
export {
  parsePolicy,
  loadPolicy,
  selectPolicy,
  evaluatePolicy,
  decisionError,
  formatDecision,
  layoutRepository,
  normalizeRepository,
  LAYOUT_SCOPE_PREFIX,
  type TrustPolicy,
  type PolicyEntry,
  type PolicyDecision,
  type PolicySubject,
} from './trust/policy.js';
export { createInstalledHandler, startInstalledServer, type InstalledHandler, type RunningInstalledServer } from './install/serve-installed.js';
export { installArtifact, resolveArtifact, rollbackPackage, type InstallOptions, type InstallResult, type InstallEvent } from './install/install.js';
export { openInstallRoot, listInstalled, InstallRoot, type ListedPackage, type InstallEventName } from './install/store.js';
export { readState, currentVersion, type InstallState, type InstalledPackage, type InstalledVersion } from './install/state.js';
export { materializeArtifact, type MaterializeOptions, type MaterializedComponent } from './install/materialize.js';
export { orderSteps, type InstallStep } from './install/plan.js';
export { fileIndex, type FileIndex } from './install/file-index.js';
