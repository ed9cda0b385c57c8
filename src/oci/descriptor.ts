/** The OCI content descriptor: everything lading moves is named by digest and size. */
export interface Platform {
  architecture: string;
  os: string;
  'os.version'?: string;
  'os.features'?: string[];
  variant?: string;
  features?: string[];
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  /** base64 of the content, when embedded. */
  data?: string;
  platform?: Platform;
  artifactType?: string;
}

/** Two descriptors name the same content when digest and size agree. */
export function sameContent(a: Pick<Descriptor, 'digest' | 'size'>, b: Pick<Descriptor, 'digest' | 'size'>): boolean {
  return a.digest === b.digest && a.size === b.size;
}

/**
 * The minimal descriptor: what is written into manifests (no transport-only fields). Fields come in the
 * order of the image-spec's Go types, which is how containers/image (skopeo, podman) and oras-go write
 * them back: a tool that re-encodes a manifest lading wrote then gets the same bytes, and the same digest.
 */
export function plainDescriptor(desc: Descriptor): Descriptor {
  const out: Descriptor = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
  if (desc.urls) out.urls = desc.urls;
  if (desc.annotations && Object.keys(desc.annotations).length > 0) out.annotations = desc.annotations;
  if (desc.platform) out.platform = desc.platform;
  if (desc.artifactType) out.artifactType = desc.artifactType;
  return out;
}
