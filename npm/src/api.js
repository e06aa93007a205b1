// The public API of `keystead`, the same for browsers and Node. Types and documentation:
// ../index.d.ts. Everything but init(), isKeysteadError() and httpRangeSource() runs in the
// wasm module (crates/wasm); these wrappers only make the module load lazily and check that
// handles are handles.
import { keysteadError, load, loaded, wasm } from './backend.js';

export function init(input) {
  return load(input);
}

function identityArg(v, what) {
  const m = wasm();
  if (!(v instanceof m.Identity)) {
    throw keysteadError('invalid_argument', `${what} must be an Identity`);
  }
  return m;
}

function rejecting(f) {
  try {
    return f();
  } catch (e) {
    return Promise.reject(e);
  }
}

export class Identity {
  constructor() {
    throw new TypeError('use Identity.generate(id) or importKeys(sealed, passphrase)');
  }

  static generate(id) {
    return wasm().Identity.generate(id);
  }

  static [Symbol.hasInstance](v) {
    const m = loaded();
    return m !== null && v instanceof m.Identity;
  }
}

export function exportKeys(identity, passphrase) {
  return rejecting(() => identityArg(identity, 'identity').exportKeys(identity, passphrase));
}

export function importKeys(sealed, passphrase) {
  return rejecting(() => wasm().importKeys(sealed, passphrase));
}

function userArg(v, what) {
  const m = wasm();
  if (!(v instanceof m.User)) {
    throw keysteadError('invalid_argument', `${what} must be a User`);
  }
  return m;
}

// options.group, if present, must be a Group handle of this module.
function groupOption(options) {
  const g = options?.group;
  if (g !== undefined && g !== null && !(g instanceof wasm().Group)) {
    throw keysteadError('invalid_argument', 'options.group must be a Group');
  }
}

export class User {
  constructor() {
    throw new TypeError('use createUser(userId) or recover(escrow, secret)');
  }

  static [Symbol.hasInstance](v) {
    const m = loaded();
    return m !== null && v instanceof m.User;
  }
}

export class Group {
  constructor() {
    throw new TypeError('use createGroup(...) or Group.fromLog(entries)');
  }

  static fromLog(entries, checkpoint) {
    return wasm().Group.fromLog(entries, checkpoint);
  }

  static [Symbol.hasInstance](v) {
    const m = loaded();
    return m !== null && v instanceof m.Group;
  }
}

export function createUser(userId) {
  return wasm().createUser(userId);
}

export function recover(escrow, secret, record) {
  return rejecting(() => wasm().recover(escrow, secret, record));
}

export function safetyCode(userIdA, identityKeyA, userIdB, identityKeyB) {
  return wasm().safetyCode(userIdA, identityKeyA, userIdB, identityKeyB);
}

export function createGroup(admin, groupId, members, options) {
  return userArg(admin, 'admin').createGroup(admin, groupId, members, options);
}

export function encryptStream(input, recipients, signer, options) {
  groupOption(options);
  return identityArg(signer, 'signer').encryptStream(input, recipients, signer, options);
}

export function decryptStream(input, identity, options) {
  groupOption(options);
  return identityArg(identity, 'identity').decryptStream(input, identity, options);
}

export function encryptBlob(blob, recipients, signer, options) {
  return rejecting(() => {
    groupOption(options);
    return identityArg(signer, 'signer').encryptBlob(blob, recipients, signer, options);
  });
}

export function decryptBlob(blob, identity, options) {
  return rejecting(() => {
    groupOption(options);
    return identityArg(identity, 'identity').decryptBlob(blob, identity, options);
  });
}

export function decryptRange(source, start, end, identity, options) {
  return rejecting(() => {
    groupOption(options);
    return identityArg(identity, 'identity').decryptRange(source, start, end, identity, options);
  });
}

export function grantAccess(header, granter, recipients, options) {
  groupOption(options);
  return identityArg(granter, 'granter').grantAccess(header, granter, recipients, options);
}

export function revokeAccess(accessBlock, recipients, options) {
  groupOption(options);
  return wasm().revokeAccess(accessBlock, recipients, options);
}

export function reencrypt(file, identity, recipients, signer, options) {
  groupOption(options);
  if (options?.to !== undefined && !(options.to instanceof wasm().Group)) {
    throw keysteadError('invalid_argument', 'options.to must be a Group');
  }
  identityArg(signer, 'signer');
  return identityArg(identity, 'identity').reencrypt(file, identity, recipients, signer, options);
}

export function errorCodes() {
  return wasm().errorCodes();
}

export function isKeysteadError(e) {
  return e instanceof Error && e.name === 'KeysteadError' && typeof e.code === 'string';
}

export async function httpRangeSource(url, init = {}) {
  const get = async (first, last) => {
    const headers = new Headers(init.headers);
    headers.set('Range', `bytes=${first}-${last}`);
    let res;
    try {
      res = await fetch(url, { ...init, headers });
    } catch (cause) {
      throw Object.assign(keysteadError('source_failed', `fetching ${url} failed`), { cause });
    }
    if (res.status !== 206) {
      await res.body?.cancel();
      throw keysteadError(
        'source_failed',
        `expected 206 Partial Content for a Range request, got ${res.status}`,
      );
    }
    return res;
  };
  const probe = await get(0, 0);
  const total = /^bytes \d+-\d+\/(\d+)$/.exec(probe.headers.get('Content-Range') ?? '');
  await probe.body?.cancel();
  if (!total) {
    throw keysteadError('source_failed', 'the response has no Content-Range with a total length');
  }
  return {
    size: Number(total[1]),
    async read(start, end) {
      if (start === end) return new Uint8Array(0);
      const res = await get(start, end - 1);
      return new Uint8Array(await res.arrayBuffer());
    },
  };
}
