// Device request signatures (Identity.signRequest) against the frozen request_auth vectors,
// and the Directory client against a fake fetch: what it sends, how it signs, and how it
// turns answers into errors. The real server is exercised by test/browser/groups.test.mjs.
import assert from 'node:assert/strict';
import { createHash, createPublicKey, verify } from 'node:crypto';
import { test } from 'node:test';

import {
  createUser,
  Directory,
  DirectoryConflictError,
  DirectoryError,
  Identity,
  init,
} from 'keystead';
import { hex, throwsWith, toHex, vectors } from './support.mjs';

await init();

const LABEL = new TextEncoder().encode('keystead/v1/request');

function lp16(bytes) {
  const out = new Uint8Array(2 + bytes.length);
  out[0] = bytes.length >> 8;
  out[1] = bytes.length & 0xff;
  out.set(bytes, 2);
  return out;
}

/** The signed input of docs/FORMAT.md section 30, written independently of the Rust code. */
function signedInput({ method, host, pathAndQuery, body, timestamp, nonce, deviceId }) {
  const utf8 = (s) => new TextEncoder().encode(s);
  const ts = new Uint8Array(8);
  new DataView(ts.buffer).setBigUint64(0, BigInt(timestamp));
  return Buffer.concat([
    LABEL,
    lp16(utf8(method)),
    lp16(utf8(host)),
    lp16(utf8(pathAndQuery)),
    createHash('sha256').update(body).digest(),
    ts,
    nonce,
    lp16(utf8(deviceId)),
  ]);
}

function ed25519Key(raw) {
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(raw).toString('base64url') }, format: 'jwk' });
}

const HEADER = /^Keystead-Device device="([A-Za-z0-9._~-]+)", ts=(\d+), nonce="([0-9a-f]{32})", sig="([A-Za-z0-9+/]{86}==)"$/;

function parseHeader(h) {
  const m = HEADER.exec(h);
  assert.ok(m, h);
  return { deviceId: m[1], timestamp: Number(m[2]), nonce: hex(m[3]), sig: Buffer.from(m[4], 'base64') };
}

test('the vectors: this test builds their signed input and verifies their signature', () => {
  const all = vectors('request_auth');
  assert.ok(all.length >= 2);
  for (const { name, v } of all) {
    const i = v.input;
    const input = signedInput({
      method: i.method,
      host: i.host,
      pathAndQuery: i.path_and_query,
      body: hex(i.body),
      timestamp: i.timestamp,
      nonce: hex(i.nonce),
      deviceId: i.device_id,
    });
    assert.equal(toHex(input), v.output.signed_input, name);
    const key = ed25519Key(hex(v.output.signing_public_key));
    assert.ok(verify(null, input, key, hex(v.output.signature)), name);
  }
});

test('signRequest: a header in the directory format whose signature verifies by the same rules', () => {
  const device = Identity.generate('ada-laptop');
  const key = ed25519Key(device.signingPublicKey);
  const { v } = vectors('request_auth').find((x) => x.name === 'basic');
  const req = {
    method: v.input.method,
    host: v.input.host,
    pathAndQuery: v.input.path_and_query,
    body: hex(v.input.body),
  };
  const header = device.signRequest(req.method, req.host, req.pathAndQuery, req.body, { timestamp: v.input.timestamp });
  const h = parseHeader(header);
  assert.equal(h.deviceId, 'ada-laptop');
  assert.equal(h.timestamp, v.input.timestamp);
  const input = signedInput({ ...req, timestamp: h.timestamp, nonce: h.nonce, deviceId: h.deviceId });
  assert.ok(verify(null, input, key, h.sig));
  // Every part is covered.
  for (const change of [{ method: 'GET' }, { host: 'evil.example' }, { pathAndQuery: '/x' }, { body: new Uint8Array(0) }]) {
    assert.ok(!verify(null, signedInput({ ...req, ...change, timestamp: h.timestamp, nonce: h.nonce, deviceId: h.deviceId }), key, h.sig));
  }

  // The body's hash instead of the body signs the same input; no body is the empty body.
  const hashed = parseHeader(
    device.signRequest(req.method, req.host, req.pathAndQuery, undefined, {
      bodySha256: createHash('sha256').update(req.body).digest(),
    }),
  );
  assert.ok(verify(null, signedInput({ ...req, timestamp: hashed.timestamp, nonce: hashed.nonce, deviceId: 'ada-laptop' }), key, hashed.sig));
  const empty = parseHeader(device.signRequest('GET', req.host, '/v1/x?y=1'));
  assert.ok(verify(null, signedInput({ method: 'GET', host: req.host, pathAndQuery: '/v1/x?y=1', body: new Uint8Array(0), timestamp: empty.timestamp, nonce: empty.nonce, deviceId: 'ada-laptop' }), key, empty.sig));

  // The time is now by default, and every call draws a new nonce.
  assert.ok(Math.abs(empty.timestamp - Date.now() / 1000) < 5);
  assert.notEqual(toHex(empty.nonce), toHex(hashed.nonce));
});

test('signRequest refuses what the directory would not accept', () => {
  throwsWith(() => Identity.generate('device/ada').signRequest('GET', 'h', '/'), 'invalid_id');
  const d = Identity.generate('ada');
  throwsWith(() => d.signRequest('get', 'h', '/'), 'invalid_argument');
  throwsWith(() => d.signRequest('GET', '', '/'), 'invalid_argument');
  throwsWith(() => d.signRequest('GET', 'h', 'v1'), 'invalid_argument');
  throwsWith(() => d.signRequest('PUT', 'h', '/', new Uint8Array(1), { bodySha256: new Uint8Array(32) }), 'invalid_argument');
  throwsWith(() => d.signRequest('PUT', 'h', '/', undefined, { bodySha256: new Uint8Array(31) }), 'invalid_argument');
  throwsWith(() => d.signRequest('PUT', 'h', '/', undefined, { timestamp: -1 }), 'invalid_argument');
  throwsWith(() => d.signRequest('PUT', 'h', '/', undefined, { timestamp: 1.5 }), 'invalid_argument');
});

/** A fetch that records requests and answers from `answer(request)`. */
function fakeFetch(answer) {
  const seen = [];
  const fn = async (url, init) => {
    const body = init.body === undefined ? new Uint8Array(0) : new Uint8Array(init.body instanceof ArrayBuffer ? init.body : init.body);
    const req = { url: new URL(url), method: init.method, headers: new Headers(init.headers), body };
    seen.push(req);
    return answer(req);
  };
  return { fn, seen };
}

const json = (status, body, headers = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json', ...headers } });

test('Directory: signed requests to the tenant routes, and answers decoded', async () => {
  const device = Identity.generate('bob-laptop');
  const key = ed25519Key(device.signingPublicKey);
  const head = Buffer.alloc(32, 7).toString('base64');
  const { fn, seen } = fakeFetch((req) => {
    if (req.url.pathname.endsWith('/groups')) return json(200, { groups: [{ group_id: 'g 1', seq: 3, head }] });
    return json(201, { group_id: 'g 1', seq: 4, head });
  });
  const dir = new Directory({ baseUrl: 'http://dir.example:8080/ignored/', tenant: 'acme', device, fetch: fn });
  assert.equal(dir.device, device);

  const groups = await dir.listMyGroups('user/bob');
  assert.deepEqual(groups, [{ groupId: 'g 1', seq: 3, head: new Uint8Array(32).fill(7) }]);
  const appended = await dir.appendEntry('g 1', new Uint8Array([1, 2, 3]), { members: ['user/bob'] });
  assert.equal(appended.seq, 4);

  const [list, append] = seen;
  assert.equal(list.url.href, 'http://dir.example:8080/v1/e2e/tenants/acme/users/user%2Fbob/groups');
  assert.equal(append.url.pathname, '/v1/e2e/tenants/acme/groups/g%201/entries');
  assert.deepEqual(JSON.parse(new TextDecoder().decode(append.body)), { entry: 'AQID', members: ['user/bob'] });
  for (const r of seen) {
    const h = parseHeader(r.headers.get('Authorization'));
    const input = signedInput({
      method: r.method,
      host: 'dir.example:8080',
      pathAndQuery: r.url.pathname + r.url.search,
      body: r.body,
      timestamp: h.timestamp,
      nonce: h.nonce,
      deviceId: 'bob-laptop',
    });
    assert.ok(verify(null, input, key, h.sig), r.url.pathname);
  }
});

test('Directory: token routes send the token, not a signature', async () => {
  const user = createUser('ada');
  const device = Identity.generate('ada-laptop');
  const { certificate, record } = user.addDevice(device);
  const { fn, seen } = fakeFetch((req) =>
    req.method === 'POST'
      ? json(201, { version: 1 })
      : json(200, { escrow: 'AAEC', user_record: 'AwQ=', version: 1 }),
  );
  const dir = new Directory({ baseUrl: 'http://dir.example', tenant: 'acme', fetch: fn });
  assert.equal(await dir.enroll('kst_enroll', { user, device, certificate, record }), 1);
  const sent = JSON.parse(new TextDecoder().decode(seen[0].body));
  assert.equal(seen[0].headers.get('Authorization'), 'Keystead-Token kst_enroll');
  assert.equal(sent.expected_version, 0);
  assert.equal(sent.device.device_id, 'ada-laptop');
  assert.deepEqual(Buffer.from(sent.device.signing_key, 'base64'), Buffer.from(device.signingPublicKey));
  assert.deepEqual(Buffer.from(sent.identity_key, 'base64'), Buffer.from(user.identityKey));
  const released = await dir.getEscrow('ada', 'kst_reauth');
  assert.deepEqual(released, { escrow: new Uint8Array([0, 1, 2]), record: new Uint8Array([3, 4]), version: 1 });
  assert.equal(seen[1].headers.get('Authorization'), 'Keystead-Token kst_reauth');
  // A device route without a device is a usage error, before anything is sent.
  await assert.rejects(dir.getUser('ada'), (e) => e.code === 'usage');
  assert.equal(seen.length, 2);
});

test('Directory: answers other than 2xx become errors with the server code', async () => {
  const answers = [
    json(409, { code: 'conflict', message: 'the parent has a child' }),
    json(409, { code: 'tenant_disabled', message: 'the tenant is disabled' }),
    json(404, { code: 'not_found', message: 'no such group' }),
    json(429, { code: 'rate_limited', message: 'later' }, { 'Retry-After': '30' }),
    new Response('bad gateway', { status: 502 }),
  ];
  const { fn } = fakeFetch(() => answers.shift());
  const dir = new Directory({ baseUrl: 'http://dir.example', tenant: 'acme', device: Identity.generate('d'), fetch: fn });
  const entry = new Uint8Array(1);
  await assert.rejects(dir.appendEntry('g', entry), (e) => {
    assert.ok(e instanceof DirectoryConflictError && e instanceof DirectoryError);
    assert.equal(e.name, 'DirectoryConflictError');
    assert.deepEqual([e.status, e.code, e.message], [409, 'conflict', 'the parent has a child']);
    return true;
  });
  await assert.rejects(dir.appendEntry('g', entry), (e) => !(e instanceof DirectoryConflictError) && e.code === 'tenant_disabled');
  await assert.rejects(dir.getEntries('g'), (e) => e instanceof DirectoryError && e.status === 404 && e.code === 'not_found');
  await assert.rejects(dir.getEscrow('ada', 'kst_x'), (e) => e.code === 'rate_limited' && e.retryAfter === 30);
  await assert.rejects(dir.getAccessBlock('doc'), (e) => e.status === 502 && e.code === 'http_502');

  const offline = new Directory({
    baseUrl: 'http://dir.example',
    tenant: 'acme',
    device: Identity.generate('d'),
    fetch: async () => {
      throw new TypeError('fetch failed');
    },
  });
  await assert.rejects(offline.getBlob('b'), (e) => e.status === 0 && e.code === 'network_error' && e.cause instanceof TypeError);
  assert.throws(() => new Directory({ tenant: 'acme' }), (e) => e.code === 'invalid_argument');
  assert.throws(() => new Directory({ baseUrl: 'http://x', tenant: 'acme', device: {} }), (e) => e.code === 'invalid_argument');
});
