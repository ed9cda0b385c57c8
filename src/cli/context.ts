import { LadingError } from '../errors.js';
import type { Target, TagLister } from '../content/interfaces.js';
import { OciLayout } from '../content/layout.js';
import { DEFAULT_TAG, formatReference, parseTargetReference, type Reference } from '../oci/reference.js';
import { Authorizer } from '../remote/auth/authorizer.js';
import { CredentialStore } from '../remote/auth/credentials.js';
import { undiciHttpDo } from '../remote/auth/http.js';
import { Repository } from '../remote/repository.js';
import { layoutRepository } from '../trust/policy.js';
import { Transport, isLoopbackHost } from '../remote/transport.js';

/** Options every verb takes. */
export interface GlobalOptions {
  json?: boolean;
  plainHttp?: boolean;
  registryConfig?: string;
  concurrency?: string;
}

export const VERSION = '0.1.0';

const interrupt = new AbortController();
/** Aborted on SIGINT or SIGTERM, so that a verb stops its transfers and cleans up before exiting. */
export const cliSignal: AbortSignal = interrupt.signal;

export function installSignalHandlers(): void {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      // A second signal means: stop now, cleanup or not.
      if (interrupt.signal.aborted) process.exit(130);
      interrupt.abort(new LadingError('E_ABORTED', `interrupted by ${sig}`));
    });
  }
}

export function credentialStore(opts: GlobalOptions): CredentialStore {
  return new CredentialStore({ configPath: opts.registryConfig ?? process.env.LADING_REGISTRY_CONFIG });
}

export function makeTransport(opts: GlobalOptions, store = credentialStore(opts)): Transport {
  const plainHosts = (process.env.LADING_PLAIN_HTTP ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const authorizer = new Authorizer({
    credentials: store.provider(),
    http: undiciHttpDo(),
    userAgent: `lading/${VERSION}`,
    // Credentials may travel to a plain-http token realm only where the user chose plain http.
    allowInsecureRealm: (registry, realm) =>
      isLoopbackHost(realm.host) || opts.plainHttp === true || plainHosts.includes(registry) || plainHosts.includes(realm.host),
  });
  return new Transport({ authorizer, plainHttp: opts.plainHttp ?? false, userAgent: `lading/${VERSION}` });
}

export interface OpenedTarget {
  target: Target & Partial<TagLister>;
  /** The tag or digest within the target that the user named (DEFAULT_TAG when none). */
  reference: string;
  /** Whether the user named a tag or digest at all. */
  explicit: boolean;
  /** The user-facing name of what was opened. */
  display: string;
  remote?: Reference;
  /** How trust policies name it: `registry/path`, or `oci-layout:<absolute dir>`. */
  scope: string;
}

/** Opens `spec` (a registry reference, or `layout:<dir>[:tag|@digest]`) as a target. */
export async function openTarget(spec: string, opts: GlobalOptions, mode: { create?: boolean; transport?: Transport } = {}): Promise<OpenedTarget> {
  const parsed = parseTargetReference(spec);
  if (parsed.kind === 'layout') {
    const target = await OciLayout.open(parsed.dir, { create: mode.create ?? false });
    const reference = parsed.digest ?? parsed.tag ?? DEFAULT_TAG;
    return { target, reference, explicit: Boolean(parsed.digest ?? parsed.tag), display: spec, scope: layoutRepository(parsed.dir) };
  }
  const ref = parsed.ref;
  const transport = mode.transport ?? makeTransport(opts);
  const target = new Repository(ref, { transport });
  const reference = ref.digest ?? ref.tag ?? DEFAULT_TAG;
  return { target, reference, explicit: Boolean(ref.digest ?? ref.tag), display: formatReference(ref), remote: ref, scope: `${ref.registry}/${ref.repository}` };
}

export function parseConcurrency(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new LadingError('E_USAGE', `--concurrency takes a whole number from 1 to 64, not "${value}"`);
  return n;
}
