import { typedSuite } from './typed-suite.js';
import { requirePeer } from './support/peers.js';
import { startDockerRegistry } from './support/registry.js';

typedSuite({
  name: 'docker-registry (CNCF distribution)',
  available: (t) => requirePeer(t, 'docker-registry'),
  start: () => startDockerRegistry(),
});
