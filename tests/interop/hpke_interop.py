#!/usr/bin/env python3
"""Keystead key sealing, reimplemented on top of pyhpke for interoperability tests.

This is an independent implementation of the sealing described in
crates/core/src/seal.rs and edek.rs (see also docs/FORMAT.md), written from the format
description only: it shares no code with the Rust crate. The Rust integration test
crates/core/tests/hpke_interop.rs drives it.

HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305.

    info = "keystead/v1/" || purpose || lp16(recipient id) || lp16(fingerprint)
           || lp16(object id) || lp16(epoch as u64 BE)
    fingerprint = SHA-256("keystead/v1/fingerprint" || 0x01 || X25519 public key)
    lp16(x) = 2-byte big-endian length || x

    KSS v1 = "KSS" 0x01 | purpose u8 | lp16 recipient id | fingerprint [32]
             | lp16 object id | epoch u64 BE | enc [32] | lp16 ciphertext (48)

    asymmetric EDEK = header || enc [32] || ciphertext [48], where
      header = "KSE" 0x01 | mode 3 | lp16 tenant id | lp16 config id | key version u32 BE
               | tenant key fingerprint [32]
      sealed with purpose "edek", recipient = tenant id, object = config id,
      epoch = key version, aad = 4-byte BE length || header.

Protocol: one JSON object on stdin, one JSON object on stdout. Byte strings are hex.
Every request has an "op" field:

    open_raw   {sk, enc, info, aad, ct}                               -> {plaintext}
    seal_raw   {pk, info, aad, plaintext}                             -> {enc, ct}
    open_kss   {kss, sk, aad}                  -> {secret, purpose, recipient_id,
                                                   object_id, epoch, fingerprint, info}
    seal_kss   {purpose, recipient_id, pk, object_id, epoch, aad, secret}
                                                                      -> {kss, info}
    open_edek  {edek, sk}          -> {dek, tenant_id, config_id, key_version, info, aad}
    seal_edek  {tenant_id, config_id, key_version, pk, dek}           -> {edek}
    public_key {sk}                                    -> {pk, fingerprint}

purpose is the label ("edek", "grant" or "group-key"); ids are strings; epoch and
key_version are JSON integers.

Answers: {"ok": true, ...} on success. Expected failures are answered with
{"ok": false, "error": "decrypt" | "format", "detail": ...} and exit status 0: "decrypt"
means authentication failed (wrong key, info or aad, or altered bytes), "format" that the
bytes do not parse. A malformed request gives "bad_request" and exit status 2; any other
exception is a bug and exits with status 1 and a traceback on stderr.
"""

import hashlib
import json
import struct
import sys
import unicodedata

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, PyHPKEError

SUITE = CipherSuite.new(
    KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.CHACHA20_POLY1305
)

INFO_PREFIX = b"keystead/v1/"
FINGERPRINT_LABEL = b"keystead/v1/fingerprint"
FINGERPRINT_KIND_X25519 = 0x01
FORMAT_VERSION = 1
KSS_MAGIC = b"KSS"
EDEK_MAGIC = b"KSE"
EDEK_MODE_ASYMMETRIC = 3
# Purpose label -> the byte stored in a KSS blob.
PURPOSE_BYTES = {"edek": 1, "grant": 2, "group-key": 3}
PURPOSE_LABELS = {v: k for k, v in PURPOSE_BYTES.items()}

KEY_LEN = 32
ENC_LEN = 32
TAG_LEN = 16
SEALED_KEY_CT_LEN = KEY_LEN + TAG_LEN
MAX_ID_LEN = 256
U64_MAX = 2**64 - 1
U32_MAX = 2**32 - 1


class DecryptFailed(Exception):
    """Authentication failed: wrong key, wrong context, or altered data."""


class FormatInvalid(Exception):
    """The bytes are not a valid encoding of the format."""


class BadRequest(Exception):
    """The JSON request itself is wrong (missing field, bad hex, ...)."""


# ---- encoding helpers ----------------------------------------------------------------


def lp16(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise BadRequest(f"value of {len(data)} bytes does not fit a 16-bit length")
    return struct.pack(">H", len(data)) + data


def lp32(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def id_is_valid(value: str) -> bool:
    """Keystead ids: 1..=256 bytes of UTF-8, no control characters (Unicode Cc)."""
    raw = value.encode("utf-8")
    return 0 < len(raw) <= MAX_ID_LEN and not any(
        unicodedata.category(ch) == "Cc" for ch in value
    )


def fingerprint(public_key: bytes) -> bytes:
    return hashlib.sha256(
        FINGERPRINT_LABEL + bytes([FINGERPRINT_KIND_X25519]) + public_key
    ).digest()


def public_key_of(private_key: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private_key).public_key().public_bytes_raw()


def build_info(purpose: str, recipient_id: bytes, fp: bytes, object_id: bytes, epoch: int) -> bytes:
    if purpose not in PURPOSE_BYTES:
        raise BadRequest(f"unknown purpose {purpose!r}")
    if not 0 <= epoch <= U64_MAX:
        raise BadRequest("epoch out of u64 range")
    return (
        INFO_PREFIX
        + purpose.encode("ascii")
        + lp16(recipient_id)
        + lp16(fp)
        + lp16(object_id)
        + lp16(struct.pack(">Q", epoch))
    )


class Reader:
    """Bounds-checked cursor; any short read or leftover byte is a FormatInvalid."""

    def __init__(self, data: bytes):
        self._data = data
        self._pos = 0

    @property
    def pos(self) -> int:
        return self._pos

    def take(self, n: int) -> bytes:
        if self._pos + n > len(self._data):
            raise FormatInvalid("input ends inside a field")
        out = self._data[self._pos : self._pos + n]
        self._pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack(">Q", self.take(8))[0]

    def lp16(self, min_len: int, max_len: int) -> bytes:
        n = self.u16()
        if not min_len <= n <= max_len:
            raise FormatInvalid(f"length {n} outside {min_len}..={max_len}")
        return self.take(n)

    def magic(self, magic: bytes) -> None:
        if self.take(len(magic)) != magic:
            raise FormatInvalid("bad magic")
        version = self.u8()
        if version != FORMAT_VERSION:
            raise FormatInvalid(f"unknown version {version}")

    def ident(self) -> str:
        raw = self.lp16(1, MAX_ID_LEN)
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise FormatInvalid("id is not UTF-8") from err
        if not id_is_valid(value):
            raise FormatInvalid("invalid id")
        return value

    def finish(self) -> None:
        if self._pos != len(self._data):
            raise FormatInvalid("trailing bytes")


# ---- HPKE ------------------------------------------------------------------------------


def hpke_seal(public_key: bytes, info: bytes, aad: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
    pkr = SUITE.kem.deserialize_public_key(public_key)
    enc, ctx = SUITE.create_sender_context(pkr, info)
    return enc, ctx.seal(plaintext, aad)


def hpke_open(private_key: bytes, enc: bytes, info: bytes, aad: bytes, ciphertext: bytes) -> bytes:
    skr = SUITE.kem.deserialize_private_key(private_key)
    try:
        ctx = SUITE.create_recipient_context(enc, skr, info)
        return ctx.open(ciphertext, aad)
    except (PyHPKEError, ValueError) as err:
        # ValueError: cryptography refuses a low-order enc (all-zero shared secret).
        raise DecryptFailed(str(err) or type(err).__name__) from err


# ---- KSS sealed keys -------------------------------------------------------------------


def build_kss(purpose: str, recipient_id: str, fp: bytes, object_id: str, epoch: int,
              enc: bytes, ciphertext: bytes) -> bytes:
    return (
        KSS_MAGIC
        + bytes([FORMAT_VERSION, PURPOSE_BYTES[purpose]])
        + lp16(recipient_id.encode("utf-8"))
        + fp
        + lp16(object_id.encode("utf-8"))
        + struct.pack(">Q", epoch)
        + enc
        + lp16(ciphertext)
    )


def parse_kss(blob: bytes) -> dict:
    r = Reader(blob)
    r.magic(KSS_MAGIC)
    purpose_byte = r.u8()
    if purpose_byte not in PURPOSE_LABELS:
        raise FormatInvalid(f"unknown purpose byte {purpose_byte}")
    recipient_id = r.ident()
    fp = r.take(32)
    object_id = r.ident()
    epoch = r.u64()
    enc = r.take(ENC_LEN)
    ciphertext = r.lp16(SEALED_KEY_CT_LEN, SEALED_KEY_CT_LEN)
    r.finish()
    return {
        "purpose": PURPOSE_LABELS[purpose_byte],
        "recipient_id": recipient_id,
        "fingerprint": fp,
        "object_id": object_id,
        "epoch": epoch,
        "enc": enc,
        "ciphertext": ciphertext,
    }


# ---- asymmetric EDEKs ------------------------------------------------------------------


def build_edek_header(tenant_id: str, config_id: str, key_version: int, fp: bytes) -> bytes:
    return (
        EDEK_MAGIC
        + bytes([FORMAT_VERSION, EDEK_MODE_ASYMMETRIC])
        + lp16(tenant_id.encode("utf-8"))
        + lp16(config_id.encode("utf-8"))
        + struct.pack(">I", key_version)
        + fp
    )


def parse_edek(blob: bytes) -> dict:
    r = Reader(blob)
    r.magic(EDEK_MAGIC)
    mode = r.u8()
    if mode != EDEK_MODE_ASYMMETRIC:
        raise FormatInvalid(f"EDEK mode {mode} is not asymmetric (3)")
    tenant_id = r.ident()
    config_id = r.ident()
    key_version = r.u32()
    fp = r.take(32)
    header = blob[: r.pos]
    enc = r.take(ENC_LEN)
    ciphertext = r.take(SEALED_KEY_CT_LEN)
    r.finish()
    return {
        "header": header,
        "tenant_id": tenant_id,
        "config_id": config_id,
        "key_version": key_version,
        "fingerprint": fp,
        "enc": enc,
        "ciphertext": ciphertext,
    }


def edek_info(tenant_id: str, config_id: str, key_version: int, fp: bytes) -> bytes:
    return build_info("edek", tenant_id.encode("utf-8"), fp, config_id.encode("utf-8"), key_version)


# ---- request handling ------------------------------------------------------------------


def field(req: dict, name: str):
    if name not in req:
        raise BadRequest(f"missing field {name!r}")
    return req[name]


def hex_field(req: dict, name: str, length: int | None = None) -> bytes:
    value = field(req, name)
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError as err:
        raise BadRequest(f"{name} is not hex") from err
    if length is not None and len(raw) != length:
        raise BadRequest(f"{name} must be {length} bytes, got {len(raw)}")
    return raw


def int_field(req: dict, name: str, max_value: int) -> int:
    value = field(req, name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= max_value:
        raise BadRequest(f"{name} must be an integer in 0..={max_value}")
    return value


def id_field(req: dict, name: str) -> str:
    value = field(req, name)
    if not isinstance(value, str) or not id_is_valid(value):
        raise BadRequest(f"{name} must be a valid id")
    return value


def purpose_field(req: dict) -> str:
    value = field(req, "purpose")
    if value not in PURPOSE_BYTES:
        raise BadRequest(f"unknown purpose {value!r}")
    return value


def op_open_raw(req: dict) -> dict:
    plaintext = hpke_open(
        hex_field(req, "sk", 32),
        hex_field(req, "enc", ENC_LEN),
        hex_field(req, "info"),
        hex_field(req, "aad"),
        hex_field(req, "ct"),
    )
    return {"plaintext": plaintext.hex()}


def op_seal_raw(req: dict) -> dict:
    enc, ct = hpke_seal(
        hex_field(req, "pk", 32),
        hex_field(req, "info"),
        hex_field(req, "aad"),
        hex_field(req, "plaintext"),
    )
    return {"enc": enc.hex(), "ct": ct.hex()}


def op_open_kss(req: dict) -> dict:
    blob = hex_field(req, "kss")
    sk = hex_field(req, "sk", 32)
    aad = hex_field(req, "aad")
    kss = parse_kss(blob)
    # Like the Rust side, refuse early when the key pair is not the one sealed to.
    if fingerprint(public_key_of(sk)) != kss["fingerprint"]:
        raise DecryptFailed("key pair does not match the sealed key's fingerprint")
    info = build_info(
        kss["purpose"],
        kss["recipient_id"].encode("utf-8"),
        kss["fingerprint"],
        kss["object_id"].encode("utf-8"),
        kss["epoch"],
    )
    secret = hpke_open(sk, kss["enc"], info, aad, kss["ciphertext"])
    if len(secret) != KEY_LEN:
        raise DecryptFailed("sealed key is not 32 bytes")
    return {
        "secret": secret.hex(),
        "purpose": kss["purpose"],
        "recipient_id": kss["recipient_id"],
        "object_id": kss["object_id"],
        "epoch": kss["epoch"],
        "fingerprint": kss["fingerprint"].hex(),
        "info": info.hex(),
    }


def op_seal_kss(req: dict) -> dict:
    purpose = purpose_field(req)
    recipient_id = id_field(req, "recipient_id")
    pk = hex_field(req, "pk", 32)
    object_id = id_field(req, "object_id")
    epoch = int_field(req, "epoch", U64_MAX)
    aad = hex_field(req, "aad")
    secret = hex_field(req, "secret", KEY_LEN)
    fp = fingerprint(pk)
    info = build_info(purpose, recipient_id.encode("utf-8"), fp, object_id.encode("utf-8"), epoch)
    enc, ct = hpke_seal(pk, info, aad, secret)
    blob = build_kss(purpose, recipient_id, fp, object_id, epoch, enc, ct)
    return {"kss": blob.hex(), "info": info.hex()}


def op_open_edek(req: dict) -> dict:
    edek = parse_edek(hex_field(req, "edek"))
    sk = hex_field(req, "sk", 32)
    if fingerprint(public_key_of(sk)) != edek["fingerprint"]:
        raise DecryptFailed("key pair does not match the EDEK's recipient fingerprint")
    info = edek_info(edek["tenant_id"], edek["config_id"], edek["key_version"], edek["fingerprint"])
    aad = lp32(edek["header"])
    dek = hpke_open(sk, edek["enc"], info, aad, edek["ciphertext"])
    if len(dek) != KEY_LEN:
        raise DecryptFailed("sealed DEK is not 32 bytes")
    return {
        "dek": dek.hex(),
        "tenant_id": edek["tenant_id"],
        "config_id": edek["config_id"],
        "key_version": edek["key_version"],
        "info": info.hex(),
        "aad": aad.hex(),
    }


def op_seal_edek(req: dict) -> dict:
    tenant_id = id_field(req, "tenant_id")
    config_id = id_field(req, "config_id")
    key_version = int_field(req, "key_version", U32_MAX)
    pk = hex_field(req, "pk", 32)
    dek = hex_field(req, "dek", KEY_LEN)
    fp = fingerprint(pk)
    header = build_edek_header(tenant_id, config_id, key_version, fp)
    enc, ct = hpke_seal(pk, edek_info(tenant_id, config_id, key_version, fp), lp32(header), dek)
    return {"edek": (header + enc + ct).hex()}


def op_public_key(req: dict) -> dict:
    pk = public_key_of(hex_field(req, "sk", 32))
    return {"pk": pk.hex(), "fingerprint": fingerprint(pk).hex()}


OPS = {
    "open_raw": op_open_raw,
    "seal_raw": op_seal_raw,
    "open_kss": op_open_kss,
    "seal_kss": op_seal_kss,
    "open_edek": op_open_edek,
    "seal_edek": op_seal_edek,
    "public_key": op_public_key,
}


def answer(obj: dict, status: int = 0) -> int:
    json.dump(obj, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return status


def main() -> int:
    try:
        req = json.load(sys.stdin)
        if not isinstance(req, dict):
            raise BadRequest("request must be a JSON object")
        op = field(req, "op")
        if op not in OPS:
            raise BadRequest(f"unknown op {op!r}")
        result = OPS[op](req)
    except json.JSONDecodeError as err:
        return answer({"ok": False, "error": "bad_request", "detail": f"invalid JSON: {err}"}, 2)
    except BadRequest as err:
        return answer({"ok": False, "error": "bad_request", "detail": str(err)}, 2)
    except DecryptFailed as err:
        return answer({"ok": False, "error": "decrypt", "detail": str(err)})
    except FormatInvalid as err:
        return answer({"ok": False, "error": "format", "detail": str(err)})
    return answer({"ok": True, **result})


if __name__ == "__main__":
    sys.exit(main())
