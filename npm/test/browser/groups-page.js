// The browser side of groups.test.mjs: one user's browser (one per browser context). It
// talks to the key directory through the page's own origin (test/server.mjs proxies /v1/
// to `keystead serve`); everything secret stays in this page.
import {
  createGroup,
  decryptBlob,
  decryptRange,
  Directory,
  DirectoryConflictError,
  encryptBlob,
  Group,
  Identity,
  init,
  recover,
  createUser,
} from 'keystead';

const state = { groups: new Map() };

async function sha256(bytes) {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return [...d].map((b) => b.toString(16).padStart(2, '0')).join('');
}

function fromBase64(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** The error's name and code, for expected failures the test asserts on. */
function failure(e) {
  if (typeof e?.code !== 'string') throw e;
  return { error: e.name, code: e.code, status: e.status };
}

// Checkpoints persist in this profile's storage, as an application would keep them.
function saveCheckpoint(group) {
  const cp = [...group.checkpoint()].map((b) => b.toString(16).padStart(2, '0')).join('');
  localStorage.setItem(`checkpoint:${group.groupId}`, cp);
}

function checkpoints() {
  const out = new Map();
  for (let i = 0; i < localStorage.length; i++) {
    const k = localStorage.key(i);
    if (k.startsWith('checkpoint:')) {
      const hex = localStorage.getItem(k);
      out.set(k.slice('checkpoint:'.length), Uint8Array.from(hex.match(/../g), (h) => parseInt(h, 16)));
    }
  }
  return out;
}

/** A fresh device (and, unless recovering, a fresh user) in this browser. */
window.setup = async ({ tenant, userId, deviceId, newUser }) => {
  await init();
  state.userId = userId;
  state.device = Identity.generate(deviceId);
  if (newUser) state.user = createUser(userId);
  // No baseUrl: the page's origin, whose /v1/ is the directory.
  state.dir = new Directory({ tenant, device: state.device });
  return { storage: localStorage.length };
};

/** Enrolls the device with an enrollment token and publishes the first record. */
window.enroll = async (token) => {
  const { certificate, record } = state.user.addDevice(state.device);
  const version = await state.dir.enroll(token, { user: state.user, device: state.device, certificate, record });
  const back = await state.dir.getUser(state.userId);
  return { version, devices: back.devices.map((d) => d.deviceId), sameRecord: (await sha256(back.record)) === (await sha256(record)) };
};

/** Escrows the identity key under a fresh recovery code; returns the code. */
window.escrow = async () => {
  const { escrow, recoveryCode } = await state.user.escrow();
  await state.dir.putEscrow(state.userId, escrow);
  return recoveryCode;
};

/** Creates a group with the users `memberIds` (records from the directory). */
window.createGroup = async (groupId, memberIds) => {
  const records = [];
  for (const id of memberIds) records.push((await state.dir.getUser(id)).record);
  const { group, entry } = createGroup(state.user, groupId, records);
  const head = await state.dir.createGroup(groupId, entry, { members: memberIds });
  state.groups.set(groupId, group);
  saveCheckpoint(group);
  return { seq: head.seq, epoch: group.epoch, members: group.members.map((m) => m.userId).sort() };
};

/**
 * Two tabs of the admin propose on the same parent: the second append loses the race
 * (DirectoryConflictError), syncs, proposes again and wins. Both end on the same head.
 */
window.racingRotations = async (groupId) => {
  const group = state.groups.get(groupId);
  const tab = await state.dir.fetchGroup(groupId);
  tab.unlock(state.device);
  const first = group.rotateGroup(state.user).entry;
  const second = tab.rotateGroup(state.user).entry;
  await state.dir.appendEntry(groupId, first);
  group.apply(first);
  let lost;
  try {
    await state.dir.appendEntry(groupId, second);
  } catch (e) {
    lost = { ...failure(e), conflict: e instanceof DirectoryConflictError };
  }
  const synced = await state.dir.syncGroup(tab);
  // The winning entry started an epoch whose key this tab has not opened yet.
  tab.unlock(state.device);
  const retry = tab.rotateGroup(state.user).entry;
  const head = await state.dir.appendEntry(groupId, retry);
  tab.apply(retry);
  const caughtUp = await state.dir.syncGroup(group);
  saveCheckpoint(group);
  tab.free();
  return { lost, synced, caughtUp, seq: head.seq, epoch: group.epoch };
};

/**
 * The group as this admin's device works on it: the current epoch key opened (entries
 * fetched from the directory may have started epochs this object has no key of yet).
 */
function current(groupId) {
  const group = state.groups.get(groupId);
  group.unlock(state.device);
  return group;
}

/** Encrypts `dataB64` to the group, uploads the blob and the access block under `docId`. */
window.share = async (groupId, docId, dataB64) => {
  const group = current(groupId);
  const plain = fromBase64(dataB64);
  const { blob, accessBlock } = await encryptBlob(new Blob([plain]), [], state.device, { group, documentId: docId });
  const stored = await state.dir.putBlob(docId, blob);
  const version = await state.dir.putAccessBlock(docId, accessBlock);
  return { size: stored.size, sha256: stored.sha256, version, epoch: group.epoch };
};

/** Lists this user's groups and verifies each log (against a persisted checkpoint). */
window.loadGroups = async () => {
  const listed = await state.dir.listMyGroups(state.userId);
  const loaded = await state.dir.loadMyGroups(state.userId, { checkpoints: checkpoints() });
  const out = [];
  for (const l of loaded) {
    if (l.error) {
      out.push({ groupId: l.groupId, ...failure(l.error) });
      continue;
    }
    state.groups.get(l.groupId)?.free();
    state.groups.set(l.groupId, l.group);
    saveCheckpoint(l.group);
    out.push({ groupId: l.groupId, seq: l.group.seq, epoch: l.group.epoch, members: l.group.members.map((m) => m.userId).sort() });
  }
  return { listed: listed.map((g) => g.groupId), loaded: out };
};

/** Fetches the entries after the verified head; an error (e.g. 404 once removed) is returned. */
window.syncGroup = async (groupId) => {
  const group = state.groups.get(groupId);
  try {
    const applied = await state.dir.syncGroup(group);
    saveCheckpoint(group);
    return { applied, seq: group.seq, epoch: group.epoch };
  } catch (e) {
    return failure(e);
  }
};

/** The whole log as base64 entries (for handing to another browser out of band). */
window.exportLog = async (groupId) => {
  const { entries } = await state.dir.getEntries(groupId);
  return entries.map((e) => btoa(String.fromCharCode(...e.entry)));
};

/** Verifies a log given out of band (base64 entries) as this page's view of the group. */
window.importLog = (groupId, entriesB64) => {
  try {
    const group = Group.fromLog(entriesB64.map(fromBase64), checkpoints().get(groupId));
    state.groups.get(groupId)?.free();
    state.groups.set(groupId, group);
    return { seq: group.seq, epoch: group.epoch, members: group.members.map((m) => m.userId).sort() };
  } catch (e) {
    return failure(e);
  }
};

/**
 * Downloads and decrypts `docId` through the group: the SHA-256 of the whole plaintext and
 * of a ranged read of its middle (signed Range requests). The author's signing key comes
 * from the directory, and its device must be one of the author's devices in the verified
 * log.
 */
window.openDoc = async (groupId, docId, authorUserId, authorDeviceId) => {
  const group = state.groups.get(groupId);
  try {
    const member = group.members.find((m) => m.userId === authorUserId);
    if (!member?.devices.includes(authorDeviceId)) throw new Error(`${authorDeviceId} is not in the log`);
    const u = await state.dir.getUser(authorUserId);
    const author = u.devices.find((d) => d.deviceId === authorDeviceId).signingKey;
    const { block: accessBlock } = await state.dir.getAccessBlock(docId);
    const blob = await state.dir.getBlob(docId);
    const plain = await decryptBlob(blob, state.device, { accessBlock, author, group });
    const whole = new Uint8Array(await plain.arrayBuffer());
    const [start, end] = [Math.floor(whole.length / 3), Math.floor(whole.length / 3) + 100_000];
    const source = await state.dir.blobSource(docId);
    const part = await decryptRange(source, start, end, state.device, { accessBlock, author, group });
    return { sha256: await sha256(whole), range: [start, end], rangeSha256: await sha256(part) };
  } catch (e) {
    return failure(e);
  }
};

/** Removes `userId` from the group (a new epoch); the server's member index drops them too. */
window.removeMember = async (groupId, userId) => {
  const group = current(groupId);
  const { entry } = group.removeMembers(state.user, [userId]);
  const members = group.members.map((m) => m.userId).filter((id) => id !== userId);
  const head = await state.dir.appendEntry(groupId, entry, { members });
  group.apply(entry);
  saveCheckpoint(group);
  return { seq: head.seq, epoch: group.epoch, members: group.members.map((m) => m.userId).sort() };
};

/**
 * The admin publishes a member's newer record (a device added): the entry shares the
 * current epoch key with the new device, which needs this admin's cached epoch key.
 */
window.updateMember = async (groupId, userId) => {
  const group = current(groupId);
  const { record } = await state.dir.getUser(userId);
  const { entry } = group.updateMembers(state.user, [record]);
  const head = await state.dir.appendEntry(groupId, entry);
  group.apply(entry);
  saveCheckpoint(group);
  return { seq: head.seq, epoch: group.epoch, devices: group.members.find((m) => m.userId === userId).devices };
};

/**
 * Recovery on this fresh browser: the escrow (re-authentication token), a mistyped code that
 * must fail, the right one, then a new device enrolled with an enrollment token against the
 * current record version.
 */
window.recoverAndEnroll = async (reauthToken, recoveryCode, enrollToken) => {
  const released = await state.dir.getEscrow(state.userId, reauthToken);
  // A mistyped code (its last character, part of the 12-bit check, changed) is refused
  // before any key derivation.
  const typo = recoveryCode.slice(0, -1) + (recoveryCode.endsWith('0') ? '1' : '0');
  let wrong = { error: 'none' };
  try {
    await recover(released.escrow, typo, released.record);
  } catch (e) {
    wrong = failure(e);
  }
  state.user = await recover(released.escrow, recoveryCode, released.record);
  const { certificate, record } = state.user.addDevice(state.device);
  const version = await state.dir.enroll(enrollToken, {
    user: state.user,
    device: state.device,
    certificate,
    record,
    expectedVersion: released.version,
  });
  const u = await state.dir.getUser(state.userId);
  return { wrong, released: released.version, version, devices: u.devices.map((d) => d.deviceId) };
};

/** Publishes this page's current record against `expectedVersion` (compare-and-swap). */
window.republish = async (expectedVersion) => {
  try {
    return { version: await state.dir.putUser(state.userId, { expectedVersion, record: state.user.record }) };
  } catch (e) {
    return { ...failure(e), conflict: e instanceof DirectoryConflictError };
  }
};

/** A second use of a spent token: the directory's error. */
window.escrowAgain = async (token) => {
  try {
    await state.dir.getEscrow(state.userId, token);
    return { error: 'none' };
  } catch (e) {
    return failure(e);
  }
};

window.pageReady = true;
