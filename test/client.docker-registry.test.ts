import { clientSuite } from './client-suite.js';
import { requirePeer } from './support/peers.js';
import { startDockerRegistry } from './support/registry.js';

clientSuite({
  name: 'docker-registry (CNCF distribution)',
  available: (t) => requirePeer(t, 'docker-registry'),
  start: (opts) => startDockerRegistry(opts),
  referrersApi: false,
});
