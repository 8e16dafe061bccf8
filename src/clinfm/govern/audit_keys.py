"""The audit log's key material, kept outside the database: the MAC key of the chain and the checkpoint signing key.

Each comes from a setting or a file beside the registry home: ``CLINFM_AUDIT_KEY`` (hex, >= 32 bytes) or
``CLINFM_AUDIT_KEY_FILE`` (default ``<CLINFM_HOME>/audit.key``) for the HMAC key, and
``CLINFM_AUDIT_SIGNING_KEY_FILE`` (default ``<CLINFM_HOME>/audit-signing.pem``, an Ed25519 private key) for the
checkpoints; ``CLINFM_AUDIT_VERIFY_KEY_FILE`` lets an auditor verify with only the public key. Outside production
missing files are generated (mode 0600); with ``CLINFM_ENV=production`` nothing is generated, so a server never runs
on a key nobody chose to provision (`clinfm audit init-keys DIR` makes both). A key file writable by group or others is
refused; one readable by them (a read-only secret mount) is logged.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import stat
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from clinfm.govern.db import clinfm_home

log = logging.getLogger(__name__)

MIN_KEY_BYTES = 32
_WARNED: set[Path] = set()


class AuditKeyError(RuntimeError):
    """The audit key material is missing, too weak or exposed."""


def production() -> bool:
    return os.environ.get("CLINFM_ENV", "").strip().lower() == "production"


def mac_key_file() -> Path:
    return Path(os.environ.get("CLINFM_AUDIT_KEY_FILE") or clinfm_home() / "audit.key").expanduser()


def signing_key_file() -> Path:
    return Path(os.environ.get("CLINFM_AUDIT_SIGNING_KEY_FILE") or clinfm_home() / "audit-signing.pem").expanduser()


def checkpoints_file() -> Path:
    """``CLINFM_AUDIT_CHECKPOINTS`` or ``<CLINFM_HOME>/audit-checkpoints.jsonl``: one file per governance database."""
    return Path(os.environ.get("CLINFM_AUDIT_CHECKPOINTS") or clinfm_home() / "audit-checkpoints.jsonl").expanduser()


def _read_private(path: Path) -> bytes:
    st = path.stat()
    return _read_private_cached(path, st.st_mode, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=16)
def _read_private_cached(path: Path, st_mode: int, mtime_ns: int, size: int) -> bytes:
    """Read once per file version (path, mode, mtime, size): appends do not re-read the key each time."""
    mode = stat.S_IMODE(st_mode)
    if mode & 0o022:
        raise AuditKeyError(f"audit key file {str(path)!r} has mode {mode:04o}: writable by others; expected 0600 "
                            "(chmod 600 it)")  # fmt: skip
    if mode & 0o044 and path not in _WARNED:  # a read-only secret mount (0444) is common: say so once
        _WARNED.add(path)
        log.warning("audit key file %s has mode %04o: readable by others; 0600 is safer", path.name, mode)
    for _ in range(50):  # a concurrent creator may not have written it yet
        data = path.read_bytes().strip()
        if data:
            return data
        time.sleep(0.01)
        st = path.stat()
        if st.st_size != size:  # written meanwhile: read the new version
            return _read_private(path)
    raise AuditKeyError(f"audit key file {str(path)!r} is empty")


def _create_private(path: Path, data: bytes) -> bool:
    """Write ``data`` to a new 0600 file; False if another process created it first."""
    if production():
        raise AuditKeyError(
            f"CLINFM_ENV=production and no audit key at {str(path)!r}: provision one from the secret store "
            "(CLINFM_AUDIT_KEY / CLINFM_AUDIT_KEY_FILE, CLINFM_AUDIT_SIGNING_KEY_FILE); none is generated in production"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return True


def mac_key(*, create: bool = True) -> bytes | None:
    """The chain's HMAC key; None when ``create`` is False and none is configured or on disk."""
    env = os.environ.get("CLINFM_AUDIT_KEY")
    if env:
        try:
            key = bytes.fromhex(env.strip())
        except ValueError:
            raise AuditKeyError("CLINFM_AUDIT_KEY is not hex; expected at least 64 hex digits") from None
        if len(key) < MIN_KEY_BYTES:
            raise AuditKeyError(f"CLINFM_AUDIT_KEY holds {len(key)} bytes; expected at least {MIN_KEY_BYTES}")
        return key
    path = mac_key_file()
    if not path.exists():
        if not create:
            return None
        _create_private(path, secrets.token_hex(MIN_KEY_BYTES).encode())
    try:
        key = bytes.fromhex(_read_private(path).decode())
    except ValueError:
        raise AuditKeyError(f"audit key file {str(path)!r} is not hex") from None
    if len(key) < MIN_KEY_BYTES:
        raise AuditKeyError(f"audit key file {str(path)!r} holds {len(key)} bytes; expected {MIN_KEY_BYTES}+")
    return key


def signing_key(*, create: bool = True) -> Ed25519PrivateKey | None:
    """The Ed25519 key that signs checkpoints; None when ``create`` is False and there is none."""
    path = signing_key_file()
    if not path.exists():
        if not create:
            return None
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        if _create_private(path, pem):
            public = serialization.load_pem_private_key(pem, None).public_key()
            path.with_suffix(".pub").write_bytes(
                public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            )
    key = _load_signing(_read_private(path))
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditKeyError(f"audit signing key {str(path)!r} is not an Ed25519 private key")
    return key


def generate_keys(directory: Path) -> tuple[Path, Path, Path]:
    """New key material in ``directory`` (mode 0600): ``audit.key`` (MAC), ``audit-signing.pem`` and its ``.pub``.
    Refuses to overwrite: a replaced key breaks verification of everything written with the old one."""
    directory.mkdir(parents=True, exist_ok=True)
    mac, signing = directory / "audit.key", directory / "audit-signing.pem"
    for path in (mac, signing):
        if path.exists():
            raise AuditKeyError(f"{path} exists; keep it (entries and checkpoints were made with it) or move it away")
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    for path, data in ((mac, secrets.token_hex(MIN_KEY_BYTES).encode()), (signing, pem)):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    public = serialization.load_pem_private_key(pem, None).public_key()
    pub = signing.with_suffix(".pub")
    pub.write_bytes(public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return mac, signing, pub


@functools.lru_cache(maxsize=4)
def _load_signing(pem: bytes) -> object:
    return serialization.load_pem_private_key(pem, None)


def verify_key() -> Ed25519PublicKey | None:
    """The public key checkpoints are checked with: ``CLINFM_AUDIT_VERIFY_KEY_FILE``, else the signing key's."""
    path = os.environ.get("CLINFM_AUDIT_VERIFY_KEY_FILE")
    if path:
        key = serialization.load_pem_public_key(Path(path).expanduser().read_bytes())
        if not isinstance(key, Ed25519PublicKey):
            raise AuditKeyError(f"CLINFM_AUDIT_VERIFY_KEY_FILE {path!r} is not an Ed25519 public key")
        return key
    private = signing_key(create=False)
    return private.public_key() if private else None


def key_id(public: Ed25519PublicKey) -> str:
    """A short fingerprint naming the signing key in each checkpoint."""
    import hashlib

    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]
