import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRegistry } from '../src/server/serve.js';
import { trustSuite } from './trust-suite.js';

trustSuite({
  name: 'lading serve (referrers API)',
  available: () => true,
  start: async () => {
    const root = await mkdtemp(join(tmpdir(), 'lading-serve-trust-'));
    const reg = await startRegistry({ root: join(root, 'data') });
    return {
      host: reg.host,
      stop: async () => {
        await reg.close();
        await rm(root, { recursive: true, force: true });
      },
    };
  },
});
