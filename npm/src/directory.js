// A client of Keystead's E2E key directory (docs/DIRECTORY.md) for browsers and Node: the
// routes a user's device needs, signed with the device's key (Identity.signRequest, in
// wasm) or authenticated by a token the vendor's backend minted. Types and documentation:
// ../index.d.ts. The vendor's own routes (create a user slot, mint tokens) need a service
// key and belong on the vendor's backend, so they are not here.
import { Group, Identity } from './api.js';
import { keysteadError } from './backend.js';

/** An answer other than 2xx, or no answer at all (`status` 0, code `network_error`). */
export class DirectoryError extends Error {
  constructor(status, code, message, options = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'DirectoryError';
    this.status = status;
    this.code = code;
    this.retryAfter = options.retryAfter;
  }
}

/** `409 conflict`: a compare-and-swap lost (re-read, rebase, retry) or the record exists. */
export class DirectoryConflictError extends DirectoryError {
  constructor(message, options) {
    super(409, 'conflict', message, options);
    this.name = 'DirectoryConflictError';
  }
}

const CHUNK = 0x8000;

function toBase64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += CHUNK) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + CHUNK));
  }
  return btoa(s);
}

function fromBase64(s) {
  if (typeof s !== 'string') {
    throw new DirectoryError(0, 'bad_response', 'the directory answered without an expected field');
  }
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function bytesArg(v, what) {
  if (v instanceof Uint8Array) return v;
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  throw keysteadError('invalid_argument', `${what} must be a Uint8Array`);
}

function stringArg(v, what) {
  if (typeof v !== 'string' || v.length === 0) {
    throw keysteadError('invalid_argument', `${what} must be a non-empty string`);
  }
  return v;
}

const enc = encodeURIComponent;

function sameBytes(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function head(h) {
  return { groupId: h.group_id, seq: h.seq, head: fromBase64(h.head) };
}

function deviceBody(d, what) {
  if (!(d?.device instanceof Identity)) {
    throw keysteadError('invalid_argument', `${what}.device must be an Identity`);
  }
  return {
    device_id: d.device.id,
    signing_key: toBase64(d.device.signingPublicKey),
    certificate: toBase64(bytesArg(d.certificate, `${what}.certificate`)),
  };
}

async function errorOf(res) {
  let code = `http_${res.status}`;
  let message = `the directory answered ${res.status}`;
  try {
    const body = await res.json();
    if (typeof body?.code === 'string') code = body.code;
    if (typeof body?.message === 'string') message = body.message;
  } catch {
    // Not JSON (a proxy's page, an empty body): keep the status.
  }
  const after = res.headers.get('Retry-After');
  const options = { retryAfter: after === null ? undefined : Number(after) };
  if (res.status === 409 && code === 'conflict') return new DirectoryConflictError(message, options);
  return new DirectoryError(res.status, code, message, options);
}

export class Directory {
  #base;
  #prefix;
  #fetch;
  #device;

  constructor(options = {}) {
    const { baseUrl, tenant, device, fetch: fetchFn } = options;
    const here = globalThis.location?.href;
    if (baseUrl === undefined && here === undefined) {
      throw keysteadError('invalid_argument', 'baseUrl is needed outside a page');
    }
    this.#base = new URL(baseUrl ?? '/', here);
    this.#prefix = `/v1/e2e/tenants/${enc(stringArg(tenant, 'tenant'))}`;
    this.#fetch = fetchFn ?? globalThis.fetch.bind(globalThis);
    if (device !== undefined && !(device instanceof Identity)) {
      throw keysteadError('invalid_argument', 'device must be an Identity');
    }
    this.#device = device;
  }

  /** The Identity that signs this client's requests, if any. */
  get device() {
    return this.#device;
  }

  // The server must see the path as signed: requests go to the origin's /v1/.
  #url(path) {
    return new URL(this.#prefix + path, this.#base.origin);
  }

  // One request. auth: 'device' (signed), or { token } (Keystead-Token).
  async #send(method, path, { auth = 'device', json, raw, headers } = {}) {
    const url = this.#url(path);
    const h = new Headers(headers);
    let body;
    let signOptions;
    if (json !== undefined) {
      body = new TextEncoder().encode(JSON.stringify(json));
      h.set('Content-Type', 'application/json');
    } else if (raw !== undefined) {
      // A blob upload: hashed here once, so wasm need not copy it to hash it.
      body = raw;
      signOptions = { bodySha256: new Uint8Array(await crypto.subtle.digest('SHA-256', raw)) };
      h.set('Content-Type', 'application/octet-stream');
    }
    if (auth === 'device') {
      if (this.#device === undefined) {
        throw keysteadError('usage', 'this Directory has no device to sign requests with');
      }
      const target = url.pathname + url.search;
      h.set(
        'Authorization',
        this.#device.signRequest(method, url.host, target, signOptions ? undefined : body, signOptions),
      );
    } else {
      h.set('Authorization', `Keystead-Token ${stringArg(auth.token, 'token')}`);
    }
    let res;
    try {
      res = await this.#fetch(url, { method, headers: h, body, cache: 'no-store' });
    } catch (cause) {
      throw new DirectoryError(0, 'network_error', `${method} ${url.pathname} failed`, { cause });
    }
    if (!res.ok) throw await errorOf(res);
    return res;
  }

  async #json(method, path, options) {
    const res = await this.#send(method, path, options);
    if (res.status === 204) return undefined;
    try {
      return await res.json();
    } catch (cause) {
      throw new DirectoryError(res.status, 'bad_response', 'the directory answered no JSON', { cause });
    }
  }

  // ---- users ----------------------------------------------------------------------------

  async enroll(token, { user, device, certificate, record, expectedVersion = 0 }) {
    const userId = stringArg(user?.userId, 'user.userId');
    const r = await this.#json('POST', `/users/${enc(userId)}/enroll`, {
      auth: { token },
      json: {
        identity_key: toBase64(user.identityKey),
        user_record: toBase64(bytesArg(record, 'record')),
        expected_version: expectedVersion,
        device: deviceBody({ device, certificate }, 'enroll'),
      },
    });
    return r.version;
  }

  async getUser(userId) {
    const u = await this.#json('GET', `/users/${enc(stringArg(userId, 'userId'))}`);
    return {
      userId: u.user_id,
      identityKey: u.identity_key == null ? undefined : fromBase64(u.identity_key),
      record: fromBase64(u.user_record),
      version: u.version,
      devices: u.devices.map((d) => ({
        deviceId: d.device_id,
        signingKey: fromBase64(d.signing_key),
        certificate: fromBase64(d.certificate),
      })),
    };
  }

  async putUser(userId, { expectedVersion, record, addDevices = [], removeDevices = [] }) {
    const r = await this.#json('PUT', `/users/${enc(stringArg(userId, 'userId'))}`, {
      json: {
        expected_version: expectedVersion,
        user_record: toBase64(bytesArg(record, 'record')),
        add_devices: addDevices.map((d, i) => deviceBody(d, `addDevices[${i}]`)),
        remove_devices: removeDevices,
      },
    });
    return r.version;
  }

  async putEscrow(userId, escrow) {
    await this.#send('PUT', `/users/${enc(stringArg(userId, 'userId'))}/escrow`, {
      json: { escrow: toBase64(bytesArg(escrow, 'escrow')) },
    });
  }

  async getEscrow(userId, token) {
    const r = await this.#json('GET', `/users/${enc(stringArg(userId, 'userId'))}/escrow`, {
      auth: { token },
    });
    return { escrow: fromBase64(r.escrow), record: fromBase64(r.user_record), version: r.version };
  }

  // ---- groups ---------------------------------------------------------------------------

  async listMyGroups(userId) {
    const r = await this.#json('GET', `/users/${enc(stringArg(userId, 'userId'))}/groups`);
    return r.groups.map(head);
  }

  async createGroup(groupId, entry, options = {}) {
    const json = { group_id: stringArg(groupId, 'groupId'), entry: toBase64(bytesArg(entry, 'entry')) };
    if (options.members !== undefined) json.members = options.members;
    return head(await this.#json('POST', '/groups', { json }));
  }

  async appendEntry(groupId, entry, options = {}) {
    const json = { entry: toBase64(bytesArg(entry, 'entry')) };
    if (options.members !== undefined) json.members = options.members;
    return head(
      await this.#json('POST', `/groups/${enc(stringArg(groupId, 'groupId'))}/entries`, { json }),
    );
  }

  async getEntries(groupId, options = {}) {
    const q = new URLSearchParams({ from: String(options.from ?? 0) });
    if (options.limit !== undefined) q.set('limit', String(options.limit));
    const r = await this.#json('GET', `/groups/${enc(stringArg(groupId, 'groupId'))}/entries?${q}`);
    return {
      entries: r.entries.map((e) => ({ seq: e.seq, hash: fromBase64(e.hash), entry: fromBase64(e.entry) })),
      head: head(r.head),
    };
  }

  // Every entry from `from` on, page by page, up to the head seen on the first page; and
  // that head.
  async #entriesFrom(groupId, from) {
    const entries = [];
    let next = from;
    let first;
    for (;;) {
      const page = await this.getEntries(groupId, { from: next });
      first ??= page.head;
      for (const e of page.entries) {
        if (e.seq !== next) {
          throw new DirectoryError(200, 'bad_response', `expected entry ${next}, got ${e.seq}`);
        }
        entries.push(e.entry);
        next += 1;
      }
      if (page.entries.length === 0 || next > first.seq) return { entries, head: first };
    }
  }

  async fetchGroup(groupId, options = {}) {
    const { entries } = await this.#entriesFrom(groupId, 0);
    return Group.fromLog(entries, options.checkpoint);
  }

  async syncGroup(group) {
    if (!(group instanceof Group)) throw keysteadError('invalid_argument', 'group must be a Group');
    const { entries, head: server } = await this.#entriesFrom(group.groupId, group.seq + 1);
    // The server's head must not be behind, or beside, what this client verified.
    if (server.seq < group.seq) {
      throw keysteadError('log_rollback', 'the directory serves a shorter log than verified before');
    }
    if (server.seq === group.seq && !sameBytes(server.head, group.head)) {
      throw keysteadError('log_fork', 'the directory serves another head at the verified seq');
    }
    for (const e of entries) group.apply(e);
    return entries.length;
  }

  async loadMyGroups(userId, options = {}) {
    const cps = options.checkpoints;
    const checkpointOf = (id) => (cps instanceof Map ? cps.get(id) : cps?.[id]);
    const out = [];
    for (const g of await this.listMyGroups(userId)) {
      try {
        out.push({ groupId: g.groupId, group: await this.fetchGroup(g.groupId, { checkpoint: checkpointOf(g.groupId) }) });
      } catch (error) {
        out.push({ groupId: g.groupId, error });
      }
    }
    return out;
  }

  // ---- access blocks and blobs --------------------------------------------------------

  async putAccessBlock(docId, block, expectedVersion = 0) {
    const r = await this.#json('PUT', `/access-blocks/${enc(stringArg(docId, 'docId'))}`, {
      json: { expected_version: expectedVersion, block: toBase64(bytesArg(block, 'block')) },
    });
    return r.version;
  }

  async getAccessBlock(docId) {
    const r = await this.#json('GET', `/access-blocks/${enc(stringArg(docId, 'docId'))}`);
    return { version: r.version, block: fromBase64(r.block) };
  }

  async putBlob(blobId, data) {
    let raw;
    if (data instanceof Blob) raw = await data.arrayBuffer();
    else if (data instanceof Uint8Array || data instanceof ArrayBuffer) raw = data;
    else throw keysteadError('invalid_argument', 'data must be a Blob, Uint8Array or ArrayBuffer');
    return this.#json('PUT', `/blobs/${enc(stringArg(blobId, 'blobId'))}`, { raw });
  }

  async getBlob(blobId) {
    const res = await this.#send('GET', `/blobs/${enc(stringArg(blobId, 'blobId'))}`);
    return res.blob();
  }

  #range(blobId, start, end) {
    if (!(Number.isSafeInteger(start) && Number.isSafeInteger(end) && start >= 0 && end > start)) {
      throw keysteadError('invalid_argument', 'expected integers 0 <= start < end');
    }
    return this.#send('GET', `/blobs/${enc(stringArg(blobId, 'blobId'))}`, {
      headers: { Range: `bytes=${start}-${end - 1}` },
    });
  }

  async getBlobRange(blobId, start, end) {
    const res = await this.#range(blobId, start, end);
    if (res.status !== 206) {
      await res.body?.cancel();
      throw new DirectoryError(res.status, 'bad_response', `expected 206 for a Range request, got ${res.status}`);
    }
    return new Uint8Array(await res.arrayBuffer());
  }

  async blobSource(blobId) {
    const probe = await this.#range(blobId, 0, 1);
    await probe.body?.cancel();
    const total = /^bytes \d+-\d+\/(\d+)$/.exec(probe.headers.get('Content-Range') ?? '');
    if (probe.status !== 206 || !total) {
      throw new DirectoryError(probe.status, 'bad_response', 'expected 206 with a Content-Range');
    }
    return {
      size: Number(total[1]),
      read: (start, end) => (start === end ? Promise.resolve(new Uint8Array(0)) : this.getBlobRange(blobId, start, end)),
    };
  }
}
