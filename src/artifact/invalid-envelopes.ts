/**
 * Envelopes for tests, shared by the artifact, CLI and server suites: one realistic valid envelope per
 * built-in family, and invalid ones, each with the exact first issue a check must report. Every value is
 * plain JSON, so a suite may write it to a file or send it over the wire unchanged.
 */

const SHA_A = 'sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b';
const SHA_B = 'sha256:b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c';

export const VALID_ENVELOPES: Readonly<Record<string, Record<string, unknown>>> = {
  file: {
    apiVersion: 'lading.dev/v1',
    kind: 'file',
    metadata: { name: 'release-notes', version: '1.4.0', description: 'Release notes of 1.4', labels: { team: 'docs' } },
    spec: { description: 'Markdown and PDF renderings', mediaTypes: ['text/markdown', 'application/pdf'] },
  },
  cli: {
    apiVersion: 'lading.dev/v1',
    kind: 'cli',
    metadata: {
      name: 'jq',
      version: '1.7.1',
      description: 'Command-line JSON processor',
      annotations: { 'org.opencontainers.image.source': 'https://github.com/jqlang/jq' },
    },
    spec: {
      executable: 'bin/jq',
      name: 'jq',
      args: ['--tab'],
      env: { JQ_COLORS: '0;90:0;37:0;37:0;37:0;32:1;37:1;37:34;1' },
      deps: ['oniguruma'],
      install: [
        { name: 'check', order: 0, run: ['bin/jq', '--version'] },
        { name: 'completions', order: 1, run: ['bin/jq', '-n', '"ok"'], deps: ['check'] },
        { name: 'manual', order: 2, run: ['bin/jq', '--help'] },
      ],
    },
  },
  pack: {
    apiVersion: 'lading.dev/v1',
    kind: 'pack',
    metadata: { name: 'acme-formatters', version: '2.3.0' },
    spec: {
      entry: 'dist/index.js',
      protocolVersion: 2,
      sdk: '^4.1.0',
      classes: ['Acme.Formatters.Json', 'Acme.Formatters.Yaml', 'Acme.Formatters.$Toml'],
    },
  },
  fileset: {
    apiVersion: 'lading.dev/v1',
    kind: 'fileset',
    metadata: { name: 'docs-site', version: '2024.06.1' },
    mount: { path: '/srv/www/docs', readOnly: true },
    spec: { root: 'public', include: ['**/*.html', 'assets/**'] },
  },
  config: {
    apiVersion: 'lading.dev/v1',
    kind: 'config',
    metadata: { name: 'nginx-main', labels: { 'app.kubernetes.io/name': 'nginx' } },
    spec: { format: 'text', target: '/etc/nginx/nginx.conf', schemaRef: 'https://example.com/schemas/nginx.json' },
  },
  model: {
    apiVersion: 'lading.dev/v1',
    kind: 'model',
    metadata: { name: 'llama3-8b-instruct', version: '3.0.0' },
    spec: {
      provider: 'ollama',
      model: 'llama3:8b-instruct-q4_K_M',
      parameters: { temperature: 0.7, top_p: 0.9, stop: ['<|eot_id|>'], mirostat: false, options: { num_ctx: 8192 } },
      contextWindow: 8192,
    },
  },
  bundle: {
    apiVersion: 'lading.dev/v1',
    kind: 'bundle',
    metadata: { name: 'devtools', version: '5' },
    spec: {
      components: [
        { name: 'jq', ref: 'ghcr.io/acme/tools/jq:1.7.1', digest: SHA_A },
        { name: 'docs', ref: 'ghcr.io/acme/filesets/docs-site:2024.06.1', mount: { path: '/srv/docs', readOnly: true } },
        { ref: `registry.example.com:5000/acme/configs/nginx-main@${SHA_B}`, mount: { path: '/etc/nginx' } },
      ],
    },
  },
};

export interface InvalidEnvelopeCase {
  /** Unique, says what is wrong. */
  name: string;
  /** The family the envelope is checked against. */
  family: string;
  envelope: unknown;
  /** The first issue a check reports. */
  path: string;
  message: string;
}

function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

/** The valid envelope of `family` with `change` applied to a copy. */
function variant(family: string, change: (e: any) => void): Record<string, unknown> {
  const e = clone(VALID_ENVELOPES[family]!);
  change(e);
  return e;
}

const RELATIVE_PATH = 'must be a relative path inside the content (no leading "/", no "." or ".." segments)';
const ABSOLUTE_PATH = 'must be an absolute path such as /srv/app (no "." or ".." segments, not "/")';

export const INVALID_ENVELOPES: readonly InvalidEnvelopeCase[] = [
  // envelope shape (checked the same for every family)
  {
    name: 'apiVersion of another version',
    family: 'cli',
    envelope: variant('cli', (e) => (e.apiVersion = 'lading.dev/v2')),
    path: 'apiVersion',
    message: 'must be "lading.dev/v1"',
  },
  { name: 'kind of another family', family: 'cli', envelope: variant('cli', (e) => (e.kind = 'pack')), path: 'kind', message: 'must be "cli"' },
  { name: 'kind missing', family: 'file', envelope: variant('file', (e) => delete e.kind), path: 'kind', message: 'is required' },
  { name: 'metadata missing', family: 'pack', envelope: variant('pack', (e) => delete e.metadata), path: 'metadata', message: 'is required' },
  {
    name: 'metadata.name upper-case',
    family: 'cli',
    envelope: variant('cli', (e) => (e.metadata.name = 'JQ')),
    path: 'metadata.name',
    message: 'must match pattern "^[a-z0-9]([a-z0-9._-]{0,126}[a-z0-9])?$"',
  },
  { name: 'metadata.name missing', family: 'model', envelope: variant('model', (e) => delete e.metadata.name), path: 'metadata.name', message: 'is required' },
  { name: 'metadata.version empty', family: 'pack', envelope: variant('pack', (e) => (e.metadata.version = '')), path: 'metadata.version', message: 'must not be empty' },
  {
    name: 'metadata.labels value not a string',
    family: 'file',
    envelope: variant('file', (e) => (e.metadata.labels.team = 7)),
    path: 'metadata.labels.team',
    message: 'must be string',
  },
  {
    name: 'metadata.annotations key with dots, value not a string',
    family: 'cli',
    envelope: variant('cli', (e) => (e.metadata.annotations['org.opencontainers.image.source'] = true)),
    path: 'metadata.annotations["org.opencontainers.image.source"]',
    message: 'must be string',
  },
  { name: 'unknown metadata field', family: 'config', envelope: variant('config', (e) => (e.metadata.owner = 'ops')), path: 'metadata.owner', message: 'is not allowed' },
  { name: 'unknown top-level field', family: 'bundle', envelope: variant('bundle', (e) => (e.status = 'ready')), path: 'status', message: 'is not allowed' },
  { name: 'spec not an object', family: 'file', envelope: variant('file', (e) => (e.spec = ['a'])), path: 'spec', message: 'must be object' },
  {
    name: 'envelope not an object',
    family: 'file',
    envelope: ['apiVersion', 'lading.dev/v1'],
    path: '',
    message: 'must be an envelope object {apiVersion, kind, metadata, spec}, not array',
  },
  // mount
  {
    name: 'mount on a family that is not mountable',
    family: 'cli',
    envelope: variant('cli', (e) => (e.mount = { path: '/opt/jq' })),
    path: 'mount',
    message: 'is not allowed for family cli',
  },
  {
    name: 'mount.path relative',
    family: 'fileset',
    envelope: variant('fileset', (e) => (e.mount.path = 'srv/www')),
    path: 'mount.path',
    message: 'must be an absolute path',
  },
  {
    name: 'mount.path climbing out',
    family: 'fileset',
    envelope: variant('fileset', (e) => (e.mount.path = '/srv/../etc')),
    path: 'mount.path',
    message: 'must not contain ".." segments',
  },
  {
    name: 'mount.readOnly not a boolean',
    family: 'config',
    envelope: variant('config', (e) => (e.mount = { path: '/etc/nginx', readOnly: 'yes' })),
    path: 'mount.readOnly',
    message: 'must be boolean',
  },
  { name: 'mount with an unknown field', family: 'fileset', envelope: variant('fileset', (e) => (e.mount.mode = '0755')), path: 'mount.mode', message: 'is not allowed' },
  { name: 'bundle mount without a path', family: 'bundle', envelope: variant('bundle', (e) => (e.mount = { readOnly: false })), path: 'mount.path', message: 'is required' },
  // file
  {
    name: 'file mediaTypes entry not a media type',
    family: 'file',
    envelope: variant('file', (e) => (e.spec.mediaTypes = ['text/markdown', 'markdown'])),
    path: 'spec.mediaTypes[1]',
    message: 'must be a media type such as application/vnd.example.v1+json',
  },
  // cli
  { name: 'cli executable missing', family: 'cli', envelope: variant('cli', (e) => delete e.spec.executable), path: 'spec.executable', message: 'is required' },
  { name: 'cli executable climbing out', family: 'cli', envelope: variant('cli', (e) => (e.spec.executable = '../bin/jq')), path: 'spec.executable', message: RELATIVE_PATH },
  { name: 'cli executable absolute', family: 'cli', envelope: variant('cli', (e) => (e.spec.executable = '/usr/bin/jq')), path: 'spec.executable', message: RELATIVE_PATH },
  { name: 'cli unknown spec field', family: 'cli', envelope: variant('cli', (e) => (e.spec.extra = 1)), path: 'spec.extra', message: 'is not allowed' },
  { name: 'cli install order not an integer', family: 'cli', envelope: variant('cli', (e) => (e.spec.install[2].order = 'last')), path: 'spec.install[2].order', message: 'must be integer' },
  { name: 'cli install order negative', family: 'cli', envelope: variant('cli', (e) => (e.spec.install[1].order = -1)), path: 'spec.install[1].order', message: 'must be >= 0' },
  { name: 'cli install run empty', family: 'cli', envelope: variant('cli', (e) => (e.spec.install[0].run = [])), path: 'spec.install[0].run', message: 'must have at least 1 item' },
  { name: 'cli install step without name', family: 'cli', envelope: variant('cli', (e) => delete e.spec.install[1].name), path: 'spec.install[1].name', message: 'is required' },
  {
    name: 'cli install step names repeated',
    family: 'cli',
    envelope: variant('cli', (e) => (e.spec.install[2].name = 'check')),
    path: 'spec.install[2].name',
    message: 'duplicates spec.install[0].name',
  },
  { name: 'cli args not a list', family: 'cli', envelope: variant('cli', (e) => (e.spec.args = '--tab')), path: 'spec.args', message: 'must be array' },
  {
    name: 'cli env name with a dash',
    family: 'cli',
    envelope: variant('cli', (e) => (e.spec.env = { 'JQ-COLORS': '1' })),
    path: 'spec.env["JQ-COLORS"]',
    message: 'name must match pattern "^[A-Za-z_][A-Za-z0-9_]*$"',
  },
  // pack
  {
    name: 'pack classes repeated',
    family: 'pack',
    envelope: variant('pack', (e) => (e.spec.classes = ['Acme.Json', 'Acme.Json'])),
    path: 'spec.classes[1]',
    message: 'duplicates spec.classes[0]',
  },
  {
    name: 'pack class not an identifier',
    family: 'pack',
    envelope: variant('pack', (e) => (e.spec.classes = ['Acme.1Json'])),
    path: 'spec.classes[0]',
    message: 'must match pattern "^[A-Za-z_$][A-Za-z0-9_$]*(\\.[A-Za-z_$][A-Za-z0-9_$]*)*$"',
  },
  { name: 'pack classes empty', family: 'pack', envelope: variant('pack', (e) => (e.spec.classes = [])), path: 'spec.classes', message: 'must have at least 1 item' },
  { name: 'pack sdk not a range', family: 'pack', envelope: variant('pack', (e) => (e.spec.sdk = 'latest')), path: 'spec.sdk', message: 'must be a semver range such as ^1.2.0 or >=2 <3' },
  { name: 'pack protocolVersion zero', family: 'pack', envelope: variant('pack', (e) => (e.spec.protocolVersion = 0)), path: 'spec.protocolVersion', message: 'must be >= 1' },
  { name: 'pack protocolVersion fractional', family: 'pack', envelope: variant('pack', (e) => (e.spec.protocolVersion = 1.5)), path: 'spec.protocolVersion', message: 'must be integer' },
  // fileset
  { name: 'fileset root climbing out', family: 'fileset', envelope: variant('fileset', (e) => (e.spec.root = '../public')), path: 'spec.root', message: RELATIVE_PATH },
  // config
  {
    name: 'config format unknown',
    family: 'config',
    envelope: variant('config', (e) => (e.spec.format = 'xml')),
    path: 'spec.format',
    message: 'must be one of "json", "yaml", "toml", "ini", "env", "text"',
  },
  { name: 'config target relative', family: 'config', envelope: variant('config', (e) => (e.spec.target = 'etc/nginx.conf')), path: 'spec.target', message: ABSOLUTE_PATH },
  // model
  { name: 'model provider missing', family: 'model', envelope: variant('model', (e) => delete e.spec.provider), path: 'spec.provider', message: 'is required' },
  { name: 'model contextWindow zero', family: 'model', envelope: variant('model', (e) => (e.spec.contextWindow = 0)), path: 'spec.contextWindow', message: 'must be >= 1' },
  {
    name: 'model parameter null',
    family: 'model',
    envelope: variant('model', (e) => (e.spec.parameters.seed = null)),
    path: 'spec.parameters.seed',
    message: 'must be number, string, boolean, array or object',
  },
  // bundle
  {
    name: 'bundle component ref not a reference',
    family: 'bundle',
    envelope: variant('bundle', (e) => (e.spec.components[0].ref = 'ghcr.io/Acme/Tools/jq:1.7.1')),
    path: 'spec.components[0].ref',
    message: 'must be an OCI reference such as registry.example.com/team/app:1.0',
  },
  {
    name: 'bundle component digest truncated',
    family: 'bundle',
    envelope: variant('bundle', (e) => (e.spec.components[1].digest = 'sha256:6c3c624b')),
    path: 'spec.components[1].digest',
    message: 'must be a digest such as sha256:<64 lower-case hex digits>',
  },
  { name: 'bundle components empty', family: 'bundle', envelope: variant('bundle', (e) => (e.spec.components = [])), path: 'spec.components', message: 'must have at least 1 item' },
  { name: 'bundle component ref missing', family: 'bundle', envelope: variant('bundle', (e) => delete e.spec.components[2].ref), path: 'spec.components[2].ref', message: 'is required' },
  {
    name: 'bundle component names repeated',
    family: 'bundle',
    envelope: variant('bundle', (e) => (e.spec.components[1].name = 'jq')),
    path: 'spec.components[1].name',
    message: 'duplicates spec.components[0].name',
  },
  {
    name: 'bundle component mount path relative',
    family: 'bundle',
    envelope: variant('bundle', (e) => (e.spec.components[1].mount.path = 'srv/docs')),
    path: 'spec.components[1].mount.path',
    message: ABSOLUTE_PATH,
  },
  { name: 'bundle component unknown field', family: 'bundle', envelope: variant('bundle', (e) => (e.spec.components[0].tag = 'x')), path: 'spec.components[0].tag', message: 'is not allowed' },
];
