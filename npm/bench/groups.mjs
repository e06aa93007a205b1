// Opening a document through a group of MEMBERS (default 10 000) members in Node, with the
// release build (pkg/): `node bench/groups.mjs` after `node scripts/build.mjs`.
//
//  * setup:  MEMBERS users with one device each, createGroup, one rotation (so the log has
//            two entries that each seal an epoch key to every device);
//  * cold:   Group.fromLog over the whole log (every signature, record, certificate and
//            sealed-key set) + decryptBlob of a 1 KiB document through the group (opens the
//            member's epoch key, then the grant);
//  * warm:   decryptBlob of another 1 KiB document of the same epoch with the Group from the
//            cold run (state verified, epoch key cached: the grant is all that is opened);
//  * membership: add one member then remove it (propose + apply each), CHANGE_RUNS times
//            with no documents, then again after DOCS (default 10 000) documents were
//            encrypted to the group.
// Prints best and median in milliseconds.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const k = require('../pkg/node/keystead_wasm.js');

const MEMBERS = Number(process.env.MEMBERS ?? 10000);
const COLD_RUNS = Number(process.env.COLD_RUNS ?? 3);
const WARM_RUNS = Number(process.env.WARM_RUNS ?? 50);
const now = () => performance.now();

function stats(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return `best ${s[0].toFixed(1)} ms, median ${s[Math.floor(s.length / 2)].toFixed(1)} ms (${s.length} runs)`;
}

let t = now();
const admin = k.createUser('user/admin');
const adminDevice = k.Identity.generate('device/admin-1');
admin.addDevice(adminDevice);
const records = [];
let reader = null;
for (let i = 1; i < MEMBERS; i++) {
  const u = k.createUser(`user/m${i}`);
  const d = k.Identity.generate(`device/m${i}-1`);
  u.addDevice(d);
  records.push(u.record);
  if (i === Math.floor(MEMBERS / 2)) reader = d;
  else d.free();
  u.free();
}
console.log(`setup: ${MEMBERS} users with one device each in ${((now() - t) / 1000).toFixed(1)} s`);

t = now();
const { group, entry } = k.createGroup(admin, 'group/big', records, { history: 'all' });
console.log(`createGroup (${MEMBERS} members): ${(now() - t).toFixed(0)} ms, entry ${(entry.length / 1e6).toFixed(2)} MB`);
t = now();
const { entry: rotation } = group.rotateGroup(admin);
group.apply(rotation);
console.log(`rotateGroup + apply: ${(now() - t).toFixed(0)} ms, entry ${(rotation.length / 1e6).toFixed(2)} MB`);
const log = [entry, rotation];

const body = new Blob([new Uint8Array(1024).fill(7)]);
const doc = async (id) => {
  const { blob, accessBlock } = await k.encryptBlob(body, [], adminDevice, { group, documentId: id });
  return { blob, accessBlock };
};
const open = async (g, d) => {
  const plain = await k.decryptBlob(d.blob, reader, {
    accessBlock: d.accessBlock,
    author: adminDevice.signingPublicKey,
    group: g,
  });
  if (plain.size !== 1024) throw new Error('wrong plaintext');
};

const cold = [];
let warmGroup = null;
for (let i = 0; i < COLD_RUNS; i++) {
  const d = await doc(`doc/cold-${i}`);
  const t0 = now();
  const g = k.Group.fromLog(log);
  const t1 = now();
  await open(g, d);
  cold.push(now() - t0);
  console.log(`  cold run ${i}: fromLog ${(t1 - t0).toFixed(0)} ms + open ${(now() - t1).toFixed(1)} ms`);
  if (warmGroup) warmGroup.free();
  warmGroup = g;
}
const warm = [];
for (let i = 0; i < WARM_RUNS; i++) {
  const d = await doc(`doc/warm-${i}`);
  const t0 = now();
  await open(warmGroup, d);
  warm.push(now() - t0);
}
console.log(`node ${process.version}, ${MEMBERS} members, 1 KiB document`);

// Membership changes with 0 documents, then again after DOCS documents were encrypted to
// the group: the same operations (propose + apply of one entry) on the same group size.
const DOCS = Number(process.env.DOCS ?? 10000);
let spare = 0;
const change = () => {
  const u = k.createUser(`user/new-${spare++}`);
  const d = k.Identity.generate(`device/new-${spare}-1`);
  u.addDevice(d);
  const t0 = now();
  const { entry: add } = group.addMembers(admin, [u.record]);
  group.apply(add);
  const t1 = now();
  const { entry: remove } = group.removeMembers(admin, [u.userId]);
  group.apply(remove);
  const t2 = now();
  u.free();
  d.free();
  return [t1 - t0, t2 - t1];
};
const series = (label) => {
  const adds = [];
  const removes = [];
  for (let i = 0; i < Number(process.env.CHANGE_RUNS ?? 3); i++) {
    const [a, r] = change();
    adds.push(a);
    removes.push(r);
  }
  console.log(`${label}: add one member ${stats(adds)}; remove one member ${stats(removes)}`);
};
series('membership, 0 documents');
t = now();
for (let i = 0; i < DOCS; i++) await doc(`doc/many-${i}`);
console.log(`encrypted ${DOCS} documents to the group in ${((now() - t) / 1000).toFixed(1)} s`);
series(`membership, ${DOCS} documents`);
console.log(`cold (Group.fromLog over 2 entries + decryptBlob): ${stats(cold)}`);
console.log(`warm (verified Group, epoch key cached; decryptBlob): ${stats(warm)}`);
