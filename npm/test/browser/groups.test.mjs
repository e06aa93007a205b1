// Issue 8's acceptance test: groups through the key directory, in real browsers, against a
// real `keystead serve`. Alice and Bob each use their own browser context (a fresh profile);
// a third fresh context is Alice's new browser after she lost access to her keys on it.
//
// This Node process plays the vendor's backend (service key: user slots, enrollment and
// re-authentication tokens) and compares bytes; the pages do everything a user's browser
// does, through the package's Directory client. The pages reach keystead through
// test/server.mjs, which serves them and proxies /v1/ (Host unchanged, so device signatures
// verify).
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { launchChromium } from './chromium.mjs';

import { startServer } from '../server.mjs';
import { startKeystead } from '../keystead.mjs';

const GROUP = 'team';
let keystead;
let server;
let browser;
const pages = {};
const docs = {};
let recoveryCode;

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

async function openPage(name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('console', (m) => console.log(`[${name}] ${m.text()}`));
  page.on('pageerror', (e) => console.log(`[${name} error] ${e}`));
  await page.goto(`${server.url}/test/browser/groups.html`);
  await page.waitForFunction(() => window.pageReady === true);
  pages[name] = page;
  return page;
}

// Runs `fn` (a window function's name) in a page with JSON-serialisable arguments.
const call = (page, fn, ...args) => page.evaluate(([f, a]) => window[f](...a), [fn, args]);

/** A random attachment, kept here to compare with what the pages decrypt. */
function attachment(id, size) {
  const data = randomBytes(size);
  docs[id] = { data, sha256: sha256(data) };
  return data.toString('base64');
}

function expectDoc(id, got) {
  assert.equal(got.error, undefined, `${id}: ${JSON.stringify(got)}`);
  const { data } = docs[id];
  assert.equal(got.sha256, docs[id].sha256, `${id}: whole plaintext`);
  assert.equal(got.rangeSha256, sha256(data.subarray(got.range[0], got.range[1])), `${id}: ranged read`);
}

before(async () => {
  keystead = await startKeystead();
  server = await startServer({ proxy: keystead.url });
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await server?.close();
  if (keystead) {
    // Warnings and errors only (KEYSTEAD_LOG=warn): shown when there are any.
    if (keystead.log().trim()) console.log(`keystead log:\n${keystead.log()}`);
    await keystead.close();
  }
});

test('Alice and Bob enroll a device each; Alice escrows her identity key', async () => {
  for (const [name, device] of [
    ['alice', 'alice-laptop'],
    ['bob', 'bob-laptop'],
  ]) {
    await keystead.createUser(name);
    const page = await openPage(name);
    await call(page, 'setup', { tenant: keystead.tenant, userId: name, deviceId: device, newUser: true });
    const r = await call(page, 'enroll', await keystead.token(name, 'enrollment'));
    assert.deepEqual(r, { version: 1, devices: [device], sameRecord: true });
  }
  recoveryCode = await call(pages.alice, 'escrow');
  assert.match(recoveryCode, /^[0-9A-Z]{4}(-[0-9A-Z]{4}){6}$/);
});

test('Alice creates a group with Bob and shares an attachment; Bob lists, verifies and opens it', async () => {
  const created = await call(pages.alice, 'createGroup', GROUP, ['alice', 'bob']);
  assert.deepEqual(created, { seq: 0, epoch: 1, members: ['alice', 'bob'] });

  // Two proposals on the same parent: the directory takes one, the other gets a typed 409.
  const race = await call(pages.alice, 'racingRotations', GROUP);
  assert.deepEqual(race.lost, { error: 'DirectoryConflictError', code: 'conflict', status: 409, conflict: true });
  assert.equal(race.synced, 1);
  assert.equal(race.caughtUp, 1);
  assert.equal(race.seq, 2);
  assert.equal(race.epoch, 3);

  const shared = await call(pages.alice, 'share', GROUP, 'doc-1', attachment('doc-1', 1_500_000));
  assert.equal(shared.version, 1);
  assert.ok(shared.size > docs['doc-1'].data.length, 'the blob is the ciphertext');
  assert.notEqual(shared.sha256, docs['doc-1'].sha256);

  const mine = await call(pages.bob, 'loadGroups');
  assert.deepEqual(mine.listed, [GROUP]);
  assert.deepEqual(mine.loaded, [{ groupId: GROUP, seq: 2, epoch: 3, members: ['alice', 'bob'] }]);
  expectDoc('doc-1', await call(pages.bob, 'openDoc', GROUP, 'doc-1', 'alice', 'alice-laptop'));
});

test('Alice removes Bob: he cannot open what she shares afterwards', async () => {
  const removed = await call(pages.alice, 'removeMember', GROUP, 'bob');
  assert.deepEqual(removed, { seq: 3, epoch: 4, members: ['alice'] });
  await call(pages.alice, 'share', GROUP, 'doc-2', attachment('doc-2', 700_000));

  // The server's member index no longer holds Bob: the group is not listed, and its log is
  // not served to him (404, as for a group that does not exist).
  const mine = await call(pages.bob, 'loadGroups');
  assert.deepEqual(mine, { listed: [], loaded: [] });
  assert.deepEqual(await call(pages.bob, 'syncGroup', GROUP), {
    error: 'DirectoryError',
    code: 'not_found',
    status: 404,
  });
  // With the log he verified before (epoch 3), the epoch-4 document does not open.
  const stale = await call(pages.bob, 'openDoc', GROUP, 'doc-2', 'alice', 'alice-laptop');
  assert.equal(stale.error, 'KeysteadError', JSON.stringify(stale));
  assert.equal(stale.code, 'decrypt_failed');

  // Nor with the whole log, had he got it some other way: he verifies it (it extends his
  // persisted checkpoint), sees he was removed, and holds no key of epoch 4.
  const log = await call(pages.alice, 'exportLog', GROUP);
  assert.equal(log.length, 4);
  assert.deepEqual(await call(pages.bob, 'importLog', GROUP, log), { seq: 3, epoch: 4, members: ['alice'] });
  const current = await call(pages.bob, 'openDoc', GROUP, 'doc-2', 'alice', 'alice-laptop');
  assert.equal(current.error, 'KeysteadError', JSON.stringify(current));
  assert.equal(current.code, 'decrypt_failed');

  // Expected: removal protects what is shared from now on. Bob received epoch 3's key
  // while he was a member, and doc-1 was neither re-encrypted nor withdrawn (any device of
  // the tenant may fetch blobs and access blocks), so he still opens it.
  expectDoc('doc-1', await call(pages.bob, 'openDoc', GROUP, 'doc-1', 'alice', 'alice-laptop'));
});

test("Recovery: Alice's fresh browser restores her identity from escrow and reads the group", async () => {
  const page = await openPage('alice-new');
  const fresh = await call(page, 'setup', {
    tenant: keystead.tenant,
    userId: 'alice',
    deviceId: 'alice-tablet',
    newUser: false,
  });
  assert.equal(fresh.storage, 0, 'a new profile holds nothing');

  // The vendor re-authenticated Alice and mints both tokens.
  const reauth = await keystead.token('alice', 'reauthentication');
  const enrollment = await keystead.token('alice', 'enrollment');
  const r = await call(page, 'recoverAndEnroll', reauth, recoveryCode, enrollment);
  assert.equal(r.wrong.code, 'malformed', JSON.stringify(r.wrong));
  assert.equal(r.released, 1);
  assert.equal(r.version, 2);
  assert.deepEqual(r.devices.sort(), ['alice-laptop', 'alice-tablet']);
  // The laptop's copy of the record is now stale: publishing it loses the version check.
  assert.deepEqual(await call(pages.alice, 'republish', 1), {
    error: 'DirectoryConflictError',
    code: 'conflict',
    status: 409,
    conflict: true,
  });
  // Right after a release, the next one waits (and the spent token would not work anyway).
  const again = await call(page, 'escrowAgain', reauth);
  assert.equal(again.code, 'rate_limited', JSON.stringify(again));

  // The new device lists and verifies the group, but the log gives it no key yet.
  const mine = await call(page, 'loadGroups');
  assert.deepEqual(mine.loaded, [{ groupId: GROUP, seq: 3, epoch: 4, members: ['alice'] }]);
  const before = await call(page, 'openDoc', GROUP, 'doc-2', 'alice', 'alice-laptop');
  assert.equal(before.code, 'decrypt_failed', JSON.stringify(before));

  // An admin device holding the current epoch key (Alice's laptop) publishes her new record;
  // the entry shares epoch 4's key with the tablet. History "all" chains it to earlier epochs.
  const updated = await call(pages.alice, 'updateMember', GROUP, 'alice');
  assert.equal(updated.seq, 4);
  assert.equal(updated.epoch, 4);
  assert.deepEqual(updated.devices.sort(), ['alice-laptop', 'alice-tablet']);

  assert.deepEqual(await call(page, 'syncGroup', GROUP), { applied: 1, seq: 4, epoch: 4 });
  expectDoc('doc-2', await call(page, 'openDoc', GROUP, 'doc-2', 'alice', 'alice-laptop'));
  expectDoc('doc-1', await call(page, 'openDoc', GROUP, 'doc-1', 'alice', 'alice-laptop'));
});
