/**
 * The one HTTP shape the auth code needs. Kept apart from the transport so that token fetching can be
 * tested against a real server without pulling in retries, proxies or redirects.
 */
export interface HttpRequest {
  method: 'GET' | 'POST';
  url: string;
  headers: Record<string, string>;
  body?: string;
}

export interface HttpResponse {
  status: number;
  /** Lower-case header names. */
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

export type HttpDo = (req: HttpRequest, signal?: AbortSignal) => Promise<HttpResponse>;

/**
 * What is known about how to log in to one registry. Any field may be absent: an identity token comes
 * alone (it is exchanged for access tokens), a registry token is sent as it is.
 */
export interface Credential {
  username?: string;
  password?: string;
  /** An OAuth2 refresh token (Docker's `identitytoken`). */
  identityToken?: string;
  /** A bearer token to send to the registry directly (Docker's `registrytoken`). */
  registryToken?: string;
}

/** Looks up the credential for a registry host (`docker.io`, `ghcr.io`, `localhost:5000`). */
export type CredentialProvider = (registry: string) => Promise<Credential | undefined>;
