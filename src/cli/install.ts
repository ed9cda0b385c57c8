import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { installArtifact, rollbackPackage } from '../install/install.js';
import { materializeArtifact } from '../install/materialize.js';
import { listInstalled, openInstallRoot } from '../install/store.js';
import { checkFrozen, lockKey, requireLockfile, updateLockfile, LOCKFILE_NAME, type LockEntry } from '../install/lockfile.js';
import { formatPlatform, hostPlatform, parsePlatform } from '../oci/platform.js';
import { isIndexMediaType } from '../oci/mediatype.js';
import type { PolicyDecision } from '../trust/policy.js';
import { cliSignal, openTarget, type GlobalOptions } from './context.js';
import { collect, withCommon } from './common.js';
import { cliOpener } from './opener.js';
import { flattenPlan, resolveBundle } from '../artifact/bundle.js';
import { emit, Progress } from './output.js';
import { enforcePolicy, gatePolicy, withVerifyGate, type VerifyGateOptions } from './trust-options.js';
import { loadFamilies, variantSelector, withFamilies, withVariant, type FamilyOptions, type VariantOptions } from './typed-options.js';

interface RootOptions {
  root?: string;
  json?: boolean;
}

interface InstallOptions extends GlobalOptions, FamilyOptions, VariantOptions, VerifyGateOptions, RootOptions {
  allowScripts?: boolean;
  sdkVersion?: string;
  hostClass: string[];
  frozen?: boolean;
  lockfile: string;
}

/** `--root`, else LADING_ROOT, else ~/.lading: where installs live. */
export function installRoot(opts: RootOptions): string {
  return opts.root ?? process.env.LADING_ROOT ?? join(homedir(), '.lading');
}

function withRoot(cmd: Command): Command {
  return cmd.option('--root <dir>', 'the install root (LADING_ROOT, else ~/.lading)');
}

export function register(program: Command): void {
  withRoot(
    withVerifyGate(
      withVariant(
        withFamilies(
          withCommon(
            program
              .command('install')
              .description('install a cli or pack artifact: fetch, verify, stage, commit atomically, expose its command under <root>/bin')
              .argument('<reference>', 'registry/repository[:tag|@digest] or layout:<dir>[:tag|@digest]')
              .option('--allow-scripts', "run the artifact's install steps (they also need a trusted signature: --verify/--policy)")
              .option('--sdk-version <version>', 'the host SDK version a pack must support')
              .option('--host-class <name>', 'a class the host provides itself, which no pack may provide (repeatable)', collect, [])
              .option('--frozen', 'install exactly what the lockfile pins, and refuse anything else')
              .option('--lockfile <path>', 'the lockfile install records into (and --frozen checks)', LOCKFILE_NAME),
          ),
        ),
      ),
    ),
  ).action(async (reference: string, opts: InstallOptions) => {
    const families = await loadFamilies(opts);
    const lock = opts.frozen ? await requireLockfile(opts.lockfile, reference) : undefined;
    const lockedFor = lock?.artifacts[lockKey(reference)];
    // Frozen installs take the platform and variant the lockfile recorded, unless told otherwise.
    const want =
      variantSelector(opts) ??
      (lockedFor?.platform ? { platform: parsePlatform(lockedFor.platform), extra: lockedFor.variant ?? {} } : { platform: hostPlatform(), extra: {} });
    const policy = await gatePolicy(opts);
    const opened = await openTarget(reference, opts);
    // Resolved once: what is verified, locked and installed is this one root digest.
    const root = await opened.target.resolve(opened.reference);
    // --frozen: the reference must still resolve to what the lockfile pins, as for pull --frozen.
    const locked = lock ? checkFrozen(lock, reference, { digest: root.digest }) : undefined;
    let verification: PolicyDecision | undefined;
    if (policy) {
      verification = await enforcePolicy(opened.target, root, opened.scope, policy, opts.json);
    }
    const signed = verification !== undefined && verification.level !== 'skip' && verification.checks.some((c) => c.ok);
    const progress = new Progress(!opts.json);
    try {
      const result = await installArtifact(opened.target, root.digest, {
        root: installRoot(opts),
        families,
        platform: want.platform,
        ...(Object.keys(want.extra).length ? { variant: want.extra } : {}),
        display: opened.display,
        expectDigest: root.digest,
        ...(locked?.manifest ? { expectManifest: locked.manifest } : {}),
        allowScripts: opts.allowScripts ?? false,
        signed,
        ...(opts.sdkVersion !== undefined ? { sdkVersion: opts.sdkVersion } : {}),
        hostClasses: opts.hostClass,
        onProgress: progress.listener,
        signal: cliSignal,
      });
      progress.stop();
      const entry: LockEntry = { digest: root.digest, mediaType: root.mediaType, size: root.size, family: result.family };
      if (isIndexMediaType(root.mediaType)) {
        entry.platform = formatPlatform(want.platform);
        if (Object.keys(want.extra).length) entry.variant = want.extra;
        entry.manifest = result.digest;
      }
      if (!opts.frozen) await updateLockfile(opts.lockfile, { [lockKey(reference)]: entry });
      emit(opts.json, { reference: opened.display, ...result, ...(verification ? { verification } : {}) }, () => [
        result.changed ? `Installed ${result.name} ${result.version}${result.previous ? ` (was ${result.previous})` : ''}` : `${result.name} ${result.version} is already installed`,
        ...(result.command ? [`Command: ${join(installRoot(opts), 'bin', result.command)}`] : []),
        `Digest: ${result.digest}`,
      ]);
    } finally {
      progress.stop();
    }
  });

  withRoot(
    program
      .command('list')
      .description('the installed packages, their versions and which is current')
      .option('--json', 'print the result as JSON'),
  ).action(async (opts: RootOptions) => {
    // Read-only: listing needs no lock and changes nothing, so a user who can only read the root may list it.
    const packages = await listInstalled(installRoot(opts));
    emit(opts.json, { root: installRoot(opts), packages }, () =>
      packages.length === 0
        ? ['Nothing installed']
        : packages.map((p) => `${p.name} ${p.current ?? '(no current version)'}  [${p.family}]${p.versions.length > 1 ? `  also: ${p.versions.map((v) => v.version).filter((v) => v !== p.current).join(', ')}` : ''}`),
    );
  });

  withRoot(
    program
      .command('uninstall')
      .description('remove an installed package, its versions and its commands')
      .argument('<name>', 'the package name')
      .option('--force', 'remove it even though another installed package depends on it')
      .option('--json', 'print the result as JSON'),
  ).action(async (name: string, opts: RootOptions & { force?: boolean }) => {
    const store = await openInstallRoot(installRoot(opts));
    await store.uninstall(name, { force: opts.force ?? false });
    emit(opts.json, { name, uninstalled: true }, () => `Uninstalled ${name}`);
  });

  withRoot(
    program
      .command('rollback')
      .description('make the version installed before the current one current again')
      .argument('<name>', 'the package name')
      .option('--host-class <name>', 'a class the host provides itself, which a pack rolled back to may not provide (repeatable)', collect, [])
      .option('--json', 'print the result as JSON'),
  ).action(async (name: string, opts: RootOptions & { hostClass: string[] }) => {
    const r = await rollbackPackage(installRoot(opts), name, { hostClasses: opts.hostClass, signal: cliSignal });
    emit(opts.json, { name, ...r }, () => `Rolled ${name} back from ${r.from} to ${r.to}`);
  });

  withVerifyGate(withVariant(
    withFamilies(
      withCommon(
        program
          .command('materialize')
          .description('lay a fileset, config or bundle out at its mount paths under a root directory')
          .argument('<reference>', 'registry/repository[:tag|@digest] or layout:<dir>[:tag|@digest]')
          .requiredOption('--root <dir>', 'the directory standing for / (mount paths are laid out beneath it)'),
      ),
    ),
  )).action(async (reference: string, opts: GlobalOptions & FamilyOptions & VariantOptions & VerifyGateOptions & { root: string }) => {
    const families = await loadFamilies(opts);
    const want = variantSelector(opts);
    const policy = await gatePolicy(opts);
    let target = reference;
    const verifications: PolicyDecision[] = [];
    if (policy) {
      // The bundle and every component are verified, then laid out by the pinned root digest.
      const plan = await resolveBundle(cliOpener(opts), reference, families, { signal: cliSignal });
      for (const node of flattenPlan(plan)) {
        const opened = await openTarget(node.pinned, opts);
        const subject = await opened.target.resolve(opened.reference);
        const decision = await enforcePolicy(opened.target, subject, opened.scope, policy, opts.json);
        verifications.push(decision);
      }
      target = plan.pinned;
    }
    const laid = await materializeArtifact(cliOpener(opts), target, {
      root: opts.root,
      families,
      ...(want ? { platform: want.platform } : {}),
      signal: cliSignal,
    });
    emit(opts.json, { root: opts.root, components: laid, ...(policy ? { verification: verifications } : {}) }, () => laid.map((c) => `${c.mountPath}  ${c.family}  ${c.reference}  ${c.digest}`));
  });
}
