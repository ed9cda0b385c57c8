import type { Descriptor } from './descriptor.js';

/** OCI image manifest (image-spec 1.1), also the shape Docker schema2 manifests are read into. */
export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

/** OCI image index, also the shape Docker manifest lists are read into. */
export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  manifests: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

export type Manifest = ImageManifest | ImageIndex;

/** A parsed manifest together with the media type it was read as. */
export type ParsedManifest =
  | { kind: 'manifest'; mediaType: string; manifest: ImageManifest }
  | { kind: 'index'; mediaType: string; manifest: ImageIndex };

/** 4 MiB: the manifest size that registries must accept and that lading never exceeds. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
