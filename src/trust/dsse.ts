import { LadingError } from '../errors.js';
import { IN_TOTO_STATEMENT_V1 } from './types.js';

/** The older statement type sigstore-js and npm provenance still write; its shape is the same as v1's. */
const IN_TOTO_STATEMENT_V01 = 'https://in-toto.io/Statement/v0.1';
const STATEMENT_TYPES = new Set([IN_TOTO_STATEMENT_V01, IN_TOTO_STATEMENT_V1]);

export interface StatementSubject {
  name: string;
  digest: Record<string, string>;
}

export interface ParsedStatement {
  type: string;
  subjects: StatementSubject[];
  predicateType: string;
  predicate: unknown;
}

/**
 * DSSE's pre-authentication encoding: what is actually signed. Lengths are byte counts, so that neither the
 * type nor the payload can be shifted across the boundary between them.
 */
export function pae(payloadType: string, payload: Buffer): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([
    Buffer.from(`DSSEv1 ${type.length} `, 'ascii'),
    type,
    Buffer.from(` ${payload.length} `, 'ascii'),
    payload,
  ]);
}

export function inTotoStatement(o: { subjects: StatementSubject[]; predicateType: string; predicate: unknown }): Buffer {
  return Buffer.from(
    JSON.stringify({ _type: IN_TOTO_STATEMENT_V1, subject: o.subjects, predicateType: o.predicateType, predicate: o.predicate }),
    'utf8',
  );
}

function invalid(why: string): LadingError {
  return new LadingError('E_BUNDLE_INVALID', `the signed payload is not an in-toto statement: ${why}`, {
    hint: 'an attestation must carry an in-toto Statement (v0.1 or v1) naming its subjects by digest',
  });
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function parseStatement(payload: Buffer): ParsedStatement {
  let doc: unknown;
  try {
    doc = JSON.parse(payload.toString('utf8'));
  } catch {
    throw invalid('it is not JSON');
  }
  if (!isRecord(doc)) throw invalid('it is not a JSON object');
  const type = doc._type;
  if (typeof type !== 'string' || !STATEMENT_TYPES.has(type)) throw invalid(`unknown _type ${JSON.stringify(type)}`);
  if (!Array.isArray(doc.subject) || doc.subject.length === 0) throw invalid('it has no subject');
  const subjects = doc.subject.map((s: unknown, i: number): StatementSubject => {
    if (!isRecord(s)) throw invalid(`subject[${i}] is not an object`);
    // v1 makes the name optional; a subject is identified by its digests.
    if (s.name !== undefined && typeof s.name !== 'string') throw invalid(`subject[${i}].name is not a string`);
    if (!isRecord(s.digest) || Object.keys(s.digest).length === 0) throw invalid(`subject[${i}] has no digest`);
    const digest: Record<string, string> = {};
    for (const [alg, hex] of Object.entries(s.digest)) {
      if (typeof hex !== 'string') throw invalid(`subject[${i}].digest.${alg} is not a string`);
      digest[alg] = hex;
    }
    return { name: (s.name as string | undefined) ?? '', digest };
  });
  if (typeof doc.predicateType !== 'string' || doc.predicateType === '') throw invalid('it has no predicateType');
  return { type, subjects, predicateType: doc.predicateType, predicate: doc.predicate };
}
