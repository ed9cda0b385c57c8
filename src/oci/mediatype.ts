/** Media types of the OCI image-spec 1.1 and the Docker formats lading reads. */
export const MediaType = {
  ImageManifest: 'application/vnd.oci.image.manifest.v1+json',
  ImageIndex: 'application/vnd.oci.image.index.v1+json',
  ImageConfig: 'application/vnd.oci.image.config.v1+json',
  ImageLayer: 'application/vnd.oci.image.layer.v1.tar',
  ImageLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ImageLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  Empty: 'application/vnd.oci.empty.v1+json',
  Layout: 'application/vnd.oci.layout.header.v1+json',
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DockerConfig: 'application/vnd.docker.container.image.v1+json',
  DockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  OctetStream: 'application/octet-stream',
} as const;

/** The empty JSON blob `{}` the image-spec names for artifacts without a config. */
export const EmptyJSON = {
  mediaType: MediaType.Empty,
  digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a',
  size: 2,
  data: 'e30=',
} as const;

export const ManifestMediaTypes: readonly string[] = [
  MediaType.ImageManifest,
  MediaType.ImageIndex,
  MediaType.DockerManifest,
  MediaType.DockerManifestList,
];

/** The Accept header for manifest requests: every manifest format lading can parse. */
export const ManifestAccept = ManifestMediaTypes.join(', ');

export function isManifestMediaType(mediaType: string | undefined): boolean {
  return mediaType !== undefined && ManifestMediaTypes.includes(mediaType);
}

export function isIndexMediaType(mediaType: string | undefined): boolean {
  return mediaType === MediaType.ImageIndex || mediaType === MediaType.DockerManifestList;
}

/** RFC 6838 type/subtype with optional parameters; what the image-spec requires of a media type. */
const MEDIA_TYPE_RE =
  /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=("[^"]*"|[A-Za-z0-9!#$&^_.+-]+))*$/;

export function isValidMediaType(mediaType: string): boolean {
  return MEDIA_TYPE_RE.test(mediaType);
}

/** Layers of directories, as ORAS marks them so that its users unpack them too. */
export const Annotation = {
  Title: 'org.opencontainers.image.title',
  RefName: 'org.opencontainers.image.ref.name',
  Created: 'org.opencontainers.image.created',
  OrasUnpack: 'io.deis.oras.content.unpack',
  OrasDigest: 'io.deis.oras.content.digest',
} as const;

/**
 * A media type as compared for meaning: parameters dropped, trimmed, lower-cased (RFC 6838 type and
 * subtype names are case-insensitive). `Application/X+JSON; charset=utf-8` and `application/x+json` are one.
 */
export function normalizeMediaType(mediaType: string): string {
  return mediaType.split(';', 1)[0]!.trim().toLowerCase();
}
