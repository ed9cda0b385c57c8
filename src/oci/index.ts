/** The public surface of oci/: pure data about references, digests, descriptors, manifests and platforms. */
export * from './digest.js';
export * from './descriptor.js';
export * from './mediatype.js';
export * from './manifest-types.js';
export * from './manifest.js';
export * from './reference.js';
export * from './platform.js';
