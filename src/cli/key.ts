import { access, constants } from 'node:fs/promises';
import type { Command } from 'commander';
import { writeFileAtomic } from '../content/atomic.js';
import { LadingError } from '../errors.js';
import { generateKeyPair, keyId, loadPublicKey } from '../trust/keys.js';
import { emit } from './output.js';
import { passphrase } from './trust-options.js';

interface KeyGenerateOptions {
  outputKeyPrefix: string;
  force?: boolean;
  json?: boolean;
}

export function register(program: Command): void {
  const key = program.command('key').description('signing keys');
  key
    .command('generate')
    .description('write an ECDSA P-256 key pair: <prefix>.key (encrypted PKCS#8 PEM) and <prefix>.pub')
    .option('--output-key-prefix <prefix>', 'where to write the pair', 'lading')
    .option('--force', 'overwrite existing files')
    .option('--json', 'print the result as JSON')
    .action(async (opts: KeyGenerateOptions) => {
      const privatePath = `${opts.outputKeyPrefix}.key`;
      const publicPath = `${opts.outputKeyPrefix}.pub`;
      if (!opts.force) {
        for (const p of [privatePath, publicPath]) {
          if (await exists(p)) throw new LadingError('E_USAGE', `${p} exists`, { hint: 'choose another --output-key-prefix, or pass --force' });
        }
      }
      const pair = generateKeyPair(await passphrase({ confirm: true }));
      // The private key is readable by its owner only, from the moment it exists.
      await writeFileAtomic(privatePath, Buffer.from(pair.privateKeyPem), { mode: 0o600 });
      await writeFileAtomic(publicPath, Buffer.from(pair.publicKeyPem), { mode: 0o644 });
      const id = keyId(loadPublicKey(pair.publicKeyPem, publicPath).key);
      emit(opts.json, { privateKey: privatePath, publicKey: publicPath, keyId: id }, () => [
        `Private key written to ${privatePath}`,
        `Public key written to ${publicPath}`,
        `Key ID: ${id}`,
      ]);
    });
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path, constants.F_OK);
    return true;
  } catch {
    return false;
  }
}
