import { trustSuite } from './trust-suite.js';
import { requirePeer } from './support/peers.js';
import { startDockerRegistry } from './support/registry.js';

trustSuite({
  name: 'docker-registry (referrers tag schema)',
  available: (t) => requirePeer(t, 'docker-registry'),
  start: () => startDockerRegistry(),
});
