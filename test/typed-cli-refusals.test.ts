/**
 * The CLI refuses every invalid envelope of the shared table with the exact first issue, before it
 * touches any target: the layout it was asked to push into is never created.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { INVALID_ENVELOPES } from '../src/artifact/invalid-envelopes.js';
import { lading } from './support/cli.js';

/** CLI processes at once: each is mostly start-up, so a few in parallel keep the file quick. */
const PARALLEL = 4;

test(`the CLI refuses the invalid envelopes of the shared table (${INVALID_ENVELOPES.length} less the missing kind it fills in) with the exact path and message, and creates nothing`, async (t) => {
  assert.ok(INVALID_ENVELOPES.length >= 20);
  const work = await mkdtemp(join(tmpdir(), 'lading-refusals-'));
  t.after(() => rm(work, { recursive: true, force: true }));
  // The CLI fills in a missing kind from --family (or the repository path): that case is accepted there.
  const cases = INVALID_ENVELOPES.filter((c) => !(c.path === 'kind' && c.message === 'is required'));
  assert.ok(cases.length >= 20);
  const queue = cases.map((c, i) => ({ c, i }));
  const failures: string[] = [];
  const worker = async (): Promise<void> => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      const { c, i } = next;
      const config = join(work, `case-${i}.json`);
      await writeFile(config, JSON.stringify(c.envelope));
      const layout = join(work, `layout-${i}`);
      const r = await lading(['push', `layout:${layout}:v1`, '--family', c.family, '--config', config, '--json']);
      const err = r.json?.error;
      const where = `${c.name} (${c.family})`;
      if (r.code !== 1 || err?.code !== 'E_CONFIG_INVALID') {
        failures.push(`${where}: exit ${r.code} ${r.stdout}${r.stderr}`);
        continue;
      }
      const first = err.details?.issues?.[0];
      if (first?.path !== c.path || first?.message !== c.message) failures.push(`${where}: got ${first?.path}: ${first?.message}; want ${c.path}: ${c.message}`);
      // The human message leads with the file and the first issue.
      if (!err.message.startsWith(c.path ? `${config}: ${c.path}: ` : `${config}: `)) failures.push(`${where}: message "${err.message}"`);
      if (await access(layout).then(() => true, () => false)) failures.push(`${where}: the layout was created`);
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  assert.deepEqual(failures, []);
});

test('a YAML envelope with a syntax error is refused with its line and column', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'lading-refusals-'));
  t.after(() => rm(work, { recursive: true, force: true }));
  const config = join(work, 'bad.yaml');
  await writeFile(config, 'apiVersion: lading.dev/v1\nkind: cli\nmetadata:\n  name: [jq\nspec: {}\n');
  const r = await lading(['push', `layout:${join(work, 'l')}:v1`, '--family', 'cli', '--config', config, '--json']);
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.json.error.code, 'E_CONFIG_INVALID');
  assert.match(r.json.error.message, new RegExp(`^${config.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: `));
});
