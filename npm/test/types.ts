// Compiled by `tsc -p tsconfig.json` (never run): the API is usable as documented, through
// the package's own name, and misuse fails to type-check.
import {
  decryptBlob,
  decryptRange,
  decryptStream,
  encryptBlob,
  encryptStream,
  errorCodes,
  exportKeys,
  httpRangeSource,
  Identity,
  importKeys,
  init,
  isKeysteadError,
  type ErrorCode,
  type KeysteadError,
  type Recipient,
  createGroup,
  createUser,
  grantAccess,
  Group,
  recover,
  reencrypt,
  revokeAccess,
  safetyCode,
  User,
  type CreatedGroup,
  type Escrow,
  type GroupMember,
  Directory,
  DirectoryConflictError,
  DirectoryError,
  type DirectoryUser,
  type GroupHead,
  type LoadedGroup,
  type ReleasedEscrow,
} from "keystead";

export async function usage(file: File, input: ReadableStream<Uint8Array>): Promise<void> {
  await init();
  const me: Identity = Identity.generate("device/me");
  const peer: Recipient = { id: "device/peer", publicKey: new Uint8Array(32) };

  const { blob, accessBlock, documentId } = await encryptBlob(file, [me, peer], me, {
    documentId: "doc-1",
  });
  const ds: string = documentId;
  const plain: Blob = await decryptBlob(blob, me, {
    accessBlock,
    author: me.signingPublicKey,
    type: "text/plain",
  });

  const enc = encryptStream(input, [me.recipient], me);
  const out: ReadableStream<Uint8Array> = decryptStream(enc.stream, me, {
    accessBlock: enc.accessBlock,
    author: me.signingPublicKey,
    trustedGranters: [me.signingPublicKey],
  });

  const bytes: Uint8Array = await decryptRange(blob, 0, 10, me, { accessBlock, author: me.signingPublicKey });
  const remote = await httpRangeSource("https://example.invalid/a", { headers: { Authorization: "x" } });
  const more: Uint8Array = await decryptRange(remote, 5, 6, me, { accessBlock, author: me.signingPublicKey });

  const sealed: Uint8Array = await exportKeys(me, "correct horse");
  const back: Identity = await importKeys(sealed, "correct horse");
  back.free();

  try {
    await decryptBlob(blob, me, { accessBlock, author: me.signingPublicKey });
  } catch (e) {
    if (isKeysteadError(e)) {
      const code: ErrorCode = e.code;
      const err: KeysteadError = e;
      void code;
      void err;
    }
  }
  const codes: ErrorCode[] = errorCodes();
  void [ds, plain, out, bytes, more, codes];

  // @ts-expect-error an Identity has no public constructor
  new Identity();
  // @ts-expect-error decryption needs the expected author
  decryptStream(enc.stream, me, { accessBlock });
  // @ts-expect-error the signer must be an Identity, not a public key
  encryptStream(input, [me], me.signingPublicKey);
  // @ts-expect-error codes are a closed union
  const bad: ErrorCode = "oops";
  void bad;
}


export async function groups(device: Identity, file: Blob): Promise<void> {
  await init();
  const u: User = createUser("user/me");
  const { certificate, record } = u.addDevice(device);
  const c: Uint8Array = certificate;
  const r: Uint8Array | undefined = u.record;
  const next: Uint8Array = u.removeDevice("device/old");
  const e: Escrow = await u.escrow();
  const code: string | undefined = e.recoveryCode;
  await u.escrow({ passphrase: "pw" });
  const back: User = await recover(e.escrow, code ?? "", record);
  const s: string = safetyCode("user/a", u.identityKey, "user/b", back.identityKey);
  const created: CreatedGroup = createGroup(u, "group/g", [record], { history: "none" });
  const g: Group = created.group;
  g.apply(created.entry);
  const again: Group = Group.fromLog([created.entry], g.checkpoint());
  again.unlock(device);
  const { entry } = g.addMembers(u, [record]);
  g.removeMembers(u, ["user/x"]);
  g.updateMembers(u, [next]);
  g.addAdmins(u, ["user/x"]);
  g.removeAdmins(u, ["user/x"]);
  g.rotateGroup(u);
  const seq: number = g.seq + g.epoch;
  const members: GroupMember[] = g.members;
  const { blob, accessBlock } = await encryptBlob(file, [], device, { group: g });
  await decryptBlob(blob, device, { accessBlock, author: device.signingPublicKey, group: g });
  const header = new Uint8Array(await blob.slice(0, 707).arrayBuffer());
  const more: Uint8Array = grantAccess(header, device, [device.recipient], {
    accessBlock,
    author: device.signingPublicKey,
    group: g,
  });
  const fewer: Uint8Array = revokeAccess(more, [device], { group: g });
  const bytes = new Uint8Array(await blob.arrayBuffer());
  const re: { file: Uint8Array; accessBlock: Uint8Array } = reencrypt(bytes, device, [], device, {
    accessBlock,
    author: device.signingPublicKey,
    group: g,
    to: g,
  });
  void [c, r, s, entry, seq, members, fewer, re];
  // @ts-expect-error: history is "all" or "none"
  createGroup(u, "group/g", [], { history: "some" });
  // @ts-expect-error: a Group comes from createGroup or Group.fromLog
  new Group();
}

export async function directory(device: Identity, token: string, file: Blob): Promise<void> {
  await init();
  const header: string = device.signRequest("GET", "keys.example:8443", "/v1/x?y=1");
  device.signRequest("PUT", "h", "/", new Uint8Array(1), { timestamp: 1_767_225_600 });
  device.signRequest("PUT", "h", "/", undefined, { bodySha256: new Uint8Array(32) });
  const dir = new Directory({ tenant: "acme", device, baseUrl: "https://keys.example" });
  const u = createUser("ada");
  const { certificate, record } = u.addDevice(device);
  const v1: number = await dir.enroll(token, { user: u, device, certificate, record });
  const someone: DirectoryUser = await dir.getUser("bob");
  await dir.putUser("ada", { expectedVersion: v1, record, addDevices: [{ device, certificate }], removeDevices: ["old"] });
  await dir.putEscrow("ada", (await u.escrow()).escrow);
  const released: ReleasedEscrow = await dir.getEscrow("ada", token);
  const heads: GroupHead[] = await dir.listMyGroups("ada");
  const { group, entry } = createGroup(u, "team", [someone.record]);
  await dir.createGroup("team", entry, { members: ["ada", "bob"] });
  try {
    await dir.appendEntry("team", group.rotateGroup(u).entry);
  } catch (e) {
    if (e instanceof DirectoryConflictError) {
      const n: number = await dir.syncGroup(group);
      void n;
    } else if (e instanceof DirectoryError) {
      const code: string = e.code;
      const status: number = e.status;
      void [code, status, e.retryAfter];
    }
  }
  const page = await dir.getEntries("team", { from: 1, limit: 10 });
  const g: Group = await dir.fetchGroup("team", { checkpoint: group.checkpoint() });
  const loaded: LoadedGroup[] = await dir.loadMyGroups("ada", { checkpoints: new Map([["team", g.checkpoint()]]) });
  for (const l of loaded) {
    if (l.group) l.group.free();
  }
  const { blob, accessBlock, documentId } = await encryptBlob(file, [], device, { group });
  await dir.putBlob(documentId, blob);
  const version: number = await dir.putAccessBlock(documentId, accessBlock);
  await dir.putAccessBlock(documentId, accessBlock, version);
  const got = await dir.getAccessBlock(documentId);
  const whole: Blob = await dir.getBlob(documentId);
  const part: Uint8Array = await dir.getBlobRange(documentId, 0, 10);
  const plain = await decryptRange(await dir.blobSource(documentId), 0, 10, device, {
    accessBlock: got.block,
    author: device.signingPublicKey,
    group,
  });
  void [header, released, heads, page, whole, part, plain];
  // @ts-expect-error: the tenant is required
  new Directory({ device });
  // @ts-expect-error: the signer is an Identity
  new Directory({ tenant: "acme", device: device.signingPublicKey });
}
