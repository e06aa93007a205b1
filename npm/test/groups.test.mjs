// Users and groups (issue 8, local half): sharing through a group, removal, recovery with a
// recovery code, and log verification errors.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  createGroup,
  createUser,
  decryptBlob,
  encryptBlob,
  errorCodes,
  grantAccess,
  Group,
  Identity,
  init,
  recover,
  reencrypt,
  revokeAccess,
  safetyCode,
  User,
} from 'keystead';
import { rejectsWith, throwsWith } from './support.mjs';

await init();

/** A user with one device. */
function person(name) {
  const user = createUser(`user/${name}`);
  const device = Identity.generate(`device/${name}-1`);
  user.addDevice(device);
  return { user, device };
}

async function share(group, author, text, documentId) {
  const { blob, accessBlock } = await encryptBlob(new Blob([text]), [], author, { group, documentId });
  return { blob, accessBlock };
}

async function open(doc, group, device, author) {
  const plain = await decryptBlob(doc.blob, device, {
    accessBlock: doc.accessBlock,
    author: author.signingPublicKey,
    group,
  });
  return plain.text();
}

test('users: records, devices, fingerprints, safety codes', () => {
  const u = createUser('user/zoe');
  assert.ok(u instanceof User);
  assert.equal(u.record, undefined);
  assert.equal(u.identityKey.length, 32);
  assert.match(u.fingerprint, /^[0-9a-f]{64}$/);
  const d1 = Identity.generate('device/zoe-1');
  const d2 = Identity.generate('device/zoe-2');
  const a = u.addDevice(d1);
  assert.ok(a.certificate instanceof Uint8Array && a.record instanceof Uint8Array);
  const b = u.addDevice(d2);
  assert.deepEqual(u.record, b.record);
  const c = u.removeDevice('device/zoe-2');
  assert.deepEqual(u.record, c);
  throwsWith(() => u.removeDevice('device/nobody'), 'usage');
  const v = createUser('user/yan');
  const s1 = safetyCode(u.userId, u.identityKey, v.userId, v.identityKey);
  const s2 = safetyCode(v.userId, v.identityKey, u.userId, u.identityKey);
  assert.equal(s1, s2);
  assert.match(s1, /^(\d{5} ){11}\d{5}$/);
  throwsWith(() => safetyCode('user/a', new Uint8Array(3), 'user/b', v.identityKey), 'invalid_key');
});

test('the new error codes are listed', () => {
  for (const c of ['not_admin', 'log_chain', 'log_rollback', 'log_fork', 'invalid_group_op', 'key_changed']) {
    assert.ok(errorCodes().includes(c), c);
  }
});

test('two members share an attachment; a removed member cannot open a newer one', async () => {
  const ada = person('ada');
  const bob = person('bob');
  const cy = person('cy');
  const { group, entry } = createGroup(ada.user, 'group/team', [bob.user.record, cy.user.record], {
    history: 'all',
  });
  assert.ok(group instanceof Group);
  assert.ok(entry instanceof Uint8Array);
  assert.equal(group.seq, 0);
  assert.equal(group.epoch, 1);
  assert.equal(group.members.length, 3);
  assert.deepEqual(group.members.filter((m) => m.admin).map((m) => m.userId), ['user/ada']);
  const log = [entry];

  // Bob verifies the log himself and reads what Ada shared.
  const bobView = Group.fromLog(log);
  const doc1 = await share(group, ada.device, 'first', 'doc/1');
  assert.equal(await open(doc1, bobView, bob.device, ada.device), 'first');
  assert.equal(await open(doc1, Group.fromLog(log), cy.device, ada.device), 'first');
  // Without the group, Bob has no grant of his own.
  await rejectsWith(
    decryptBlob(doc1.blob, bob.device, { accessBlock: doc1.accessBlock, author: ada.device.signingPublicKey }),
    'no_grant',
  );

  // Ada removes Bob: the proposal is not applied until Ada applies it.
  const { entry: removal } = group.removeMembers(ada.user, ['user/bob']);
  assert.equal(group.seq, 0, 'a proposal is not applied by itself');
  group.apply(removal);
  log.push(removal);
  assert.equal(group.seq, 1);
  assert.equal(group.epoch, 2);
  assert.deepEqual(group.members.map((m) => m.userId).sort(), ['user/ada', 'user/cy']);

  const doc2 = await share(group, ada.device, 'second', 'doc/2');
  // Bob, up to date with the log, cannot open the epoch-2 document...
  bobView.apply(removal);
  await rejectsWith(open(doc2, bobView, bob.device, ada.device), 'decrypt_failed');
  // ...nor through a fresh verification of the log.
  await rejectsWith(open(doc2, Group.fromLog(log), bob.device, ada.device), 'decrypt_failed');
  // Cy, still a member, reads both documents.
  const cyView = Group.fromLog(log);
  assert.equal(await open(doc2, cyView, cy.device, ada.device), 'second');
  assert.equal(await open(doc1, cyView, cy.device, ada.device), 'first');
});

test('recovery with the recovery code, a new device, and history "all"', async () => {
  const ada = person('ada');
  const bob = person('bob');
  const cy = person('cy');
  const { group, entry } = createGroup(ada.user, 'group/history', [bob.user.record, cy.user.record]);
  const log = [entry];
  const doc = await share(group, ada.device, 'from epoch 1', 'doc/old');

  const { escrow, recoveryCode } = await bob.user.escrow();
  assert.equal(typeof recoveryCode, 'string');
  const published = bob.user.record;
  bob.user.free();
  bob.device.free(); // Bob lost everything.

  // Ada moves the group on to epoch 2 meanwhile.
  const { entry: removal } = group.removeMembers(ada.user, ['user/cy']);
  group.apply(removal);
  log.push(removal);

  // A wrong code is refused; the right one restores the identity key.
  const other = await createUser('user/x').escrow();
  await rejectsWith(recover(escrow, other.recoveryCode, published), 'decrypt_failed');
  const restored = await recover(escrow, recoveryCode.toLowerCase().replaceAll('-', ' '), published);
  assert.ok(restored instanceof User);
  assert.equal(restored.userId, 'user/bob');
  const phone = Identity.generate('device/bob-2');
  const { record } = restored.addDevice(phone);

  // An admin publishes Bob's new record; the new device reads the epoch-1 document by
  // walking back from the epoch-2 key.
  const { entry: update } = group.updateMembers(ada.user, [record]);
  group.apply(update);
  log.push(update);
  const phoneView = Group.fromLog(log, group.checkpoint());
  assert.equal(await open(doc, phoneView, phone, ada.device), 'from epoch 1');
  const doc2 = await share(group, ada.device, 'from epoch 2', 'doc/new');
  assert.equal(await open(doc2, phoneView, phone, ada.device), 'from epoch 2');

  // A record with another identity key does not go with this escrow.
  await rejectsWith(recover(escrow, recoveryCode, person('bob').user.record), 'key_changed');
});

test('escrow under a passphrase', async () => {
  const u = person('pat').user;
  const { escrow, recoveryCode } = await u.escrow({ passphrase: 'correct horse battery staple' });
  assert.equal(recoveryCode, undefined);
  await rejectsWith(recover(escrow, 'wrong'), 'decrypt_failed');
  const back = await recover(escrow, 'correct horse battery staple');
  assert.deepEqual(back.identityKey, u.identityKey);
  assert.equal(back.record, undefined);
});

test('tampered, reordered, foreign and withheld entries are rejected with their codes', () => {
  const ada = person('ada');
  const bob = person('bob');
  const { group, entry } = createGroup(ada.user, 'group/log', [bob.user.record]);
  const log = [entry];
  const { entry: e1 } = group.rotateGroup(ada.user);
  group.apply(e1);
  log.push(e1);
  const { entry: e2 } = group.addAdmins(ada.user, ['user/bob']);
  group.apply(e2);
  log.push(e2);
  const cp = group.checkpoint();

  // A flipped bit in the signed part.
  const bad = e1.slice();
  bad[bad.length - 100] ^= 1;
  throwsWith(() => Group.fromLog([entry, bad]), 'bad_signature');
  // A flipped bit in the signature.
  const badSig = e1.slice();
  badSig[badSig.length - 1] ^= 1;
  throwsWith(() => Group.fromLog([entry, badSig]), 'bad_signature');
  // A dropped entry.
  throwsWith(() => Group.fromLog([entry, e2]), 'log_chain');
  // An entry applied twice.
  throwsWith(() => group.apply(e2), 'log_chain');
  assert.equal(group.seq, 2, 'a rejected entry leaves the group unchanged');
  // A withheld tail below a checkpoint.
  throwsWith(() => Group.fromLog([entry, e1], cp), 'log_rollback');
  // A different history (another genesis) against the checkpoint.
  const other = createGroup(ada.user, 'group/log', [bob.user.record]);
  const o1 = other.group.rotateGroup(ada.user).entry;
  other.group.apply(o1);
  const o2 = other.group.rotateGroup(ada.user).entry;
  throwsWith(() => Group.fromLog([other.entry, o1, o2], cp), 'log_fork');
  // An entry signed by a member who is not an admin.
  const cy = person('cy');
  const g2 = createGroup(ada.user, 'group/admins', [bob.user.record, cy.user.record]).group;
  const { entry: byBob } = g2.removeMembers(bob.user, ['user/cy']);
  throwsWith(() => g2.apply(byBob), 'not_admin');
  // Removing a non-member.
  throwsWith(() => g2.removeMembers(ada.user, ['user/nobody']), 'invalid_group_op');
  // Garbage.
  throwsWith(() => g2.apply(new Uint8Array([1, 2, 3])), 'malformed');
});

test('argument checks', async () => {
  const ada = person('ada');
  assert.throws(() => createGroup({}, 'g', []), (e) => e.code === 'invalid_argument');
  await rejectsWith(encryptBlob(new Blob(['x']), [], ada.device, { group: {} }), 'invalid_argument');
  await rejectsWith(encryptBlob(new Blob(['x']), [], ada.device), 'invalid_argument');
  const { group } = createGroup(ada.user, 'group/opts', []);
  throwsWith(() => createGroup(ada.user, 'group/x', [], { history: 'some' }), 'invalid_argument');
  assert.equal(group.history, 'all');
  assert.equal(group.groupId, 'group/opts');
  assert.equal(group.head.length, 32);
  assert.equal(group.checkpoint().length, 44);
});

test('grantAccess and revokeAccess on an existing access block', async () => {
  const ada = person('ada');
  const bob = person('bob');
  const dan = Identity.generate('device/dan');
  const { group } = createGroup(ada.user, 'group/grants', [bob.user.record]);
  const doc = await share(group, ada.device, 'shared', 'doc/g');
  const header = new Uint8Array(await doc.blob.slice(0, 707).arrayBuffer());
  const author = ada.device.signingPublicKey;
  // Bob, a member, passes the document on to Dan, a device outside the group.
  const more = grantAccess(header, bob.device, [dan], { accessBlock: doc.accessBlock, author, group });
  const danOpts = { accessBlock: more, author, trustedGranters: [author, bob.device.signingPublicKey] };
  assert.equal(await (await decryptBlob(doc.blob, dan, danOpts)).text(), 'shared');
  // Without trusting Bob as a granter, Dan's grant is ignored.
  await rejectsWith(decryptBlob(doc.blob, dan, { accessBlock: more, author }), 'no_grant');
  // A wrong expected author is refused before anything is granted.
  throwsWith(
    () =>
      grantAccess(header, bob.device, [dan], {
        accessBlock: doc.accessBlock,
        author: dan.signingPublicKey,
        trustedGranters: [author],
        group,
      }),
    'bad_signature',
  );
  // Revoking Dan removes his grant; revoking the group removes the group's.
  const less = revokeAccess(more, [dan]);
  await rejectsWith(decryptBlob(doc.blob, dan, { ...danOpts, accessBlock: less }), 'no_grant');
  assert.equal(await open({ blob: doc.blob, accessBlock: less }, group, bob.device, ada.device), 'shared');
  const none = revokeAccess(less, [], { group });
  await rejectsWith(open({ blob: doc.blob, accessBlock: none }, group, bob.device, ada.device), 'no_grant');
});

test("a Group's cached epoch key does not serve another device", async () => {
  const ada = person('ada');
  const bob = person('bob');
  const eve = Identity.generate('device/eve');
  const { group } = createGroup(ada.user, 'group/cache', [bob.user.record]);
  const doc = await share(group, ada.device, 'members only', 'doc/c');
  // The same Group object opens it for Bob (and caches the epoch key)...
  assert.equal(await open(doc, group, bob.device, ada.device), 'members only');
  // ...but not for a device the log gives no key, nor one reusing Bob's device id.
  await rejectsWith(open(doc, group, eve, ada.device), 'decrypt_failed');
  await rejectsWith(open(doc, group, Identity.generate('device/bob-1'), ada.device), 'decrypt_failed');
  assert.equal(await open(doc, group, ada.device, ada.device), 'members only');
});

test('reencrypt: a removed member cannot open the re-encrypted file', async () => {
  const ada = person('ada');
  const bob = person('bob');
  const cy = person('cy');
  const { group, entry } = createGroup(ada.user, 'group/re', [bob.user.record, cy.user.record]);
  const log = [entry];
  const doc = await share(group, ada.device, 'secret', 'doc/re');
  const bobView = Group.fromLog(log);
  assert.equal(await open(doc, bobView, bob.device, ada.device), 'secret');
  const { entry: removal } = group.removeMembers(ada.user, ['user/bob']);
  group.apply(removal);
  log.push(removal);
  bobView.apply(removal);
  const file = new Uint8Array(await doc.blob.arrayBuffer());
  const author = ada.device.signingPublicKey;
  const re = reencrypt(file, ada.device, [], ada.device, { accessBlock: doc.accessBlock, author, group, to: group });
  const reDoc = { blob: new Blob([re.file]), accessBlock: re.accessBlock };
  assert.equal(await open(reDoc, Group.fromLog(log), cy.device, ada.device), 'secret');
  await rejectsWith(open(reDoc, bobView, bob.device, ada.device), 'decrypt_failed');
  // The old access block does not fit the new file.
  await rejectsWith(open({ blob: reDoc.blob, accessBlock: doc.accessBlock }, bobView, bob.device, ada.device), 'decrypt_failed');
  // A tampered old file is refused (full check, trailer included).
  const bad = file.slice();
  bad[bad.length - 1] ^= 1;
  throwsWith(() => reencrypt(bad, ada.device, [], ada.device, { accessBlock: doc.accessBlock, author, group, to: group }), 'bad_signature');
});
