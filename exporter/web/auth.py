"""`--web.config.file`: TLS and basic auth in the Prometheus exporter-toolkit format.

    tls_server_config:
      cert_file: server.crt
      key_file: server.key
      client_ca_file: clients.crt          # optional: verify client certificates
      client_auth_type: RequireAndVerifyClientCert
      min_version: TLS12
    basic_auth_users:
      prometheus: $2y$10$...               # a bcrypt hash (the README shows how to make one)

Checking a bcrypt hash is deliberately slow (tens of milliseconds), so a
successful check is remembered, keyed by a SHA-256 of user, password and hash,
the same cache the exporter-toolkit keeps. Hashes must be well-formed bcrypt with
a cost from 4 to 31 (what bcrypt itself takes); loading the file hashes nothing,
and every check runs off the event loop (the app sends it to a thread).

Every value is checked for its type before it is used, so a list where a string
belongs is a problem naming its key, never an exception.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt

from exporter.config.yamldoc import YamlDocument, read_text

CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_BCRYPT = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
BCRYPT_COSTS = range(4, 32)
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}


@dataclass(frozen=True)
class WebConfig:
    ssl_context: ssl.SSLContext | None
    basic_auth: BasicAuth | None


class BasicAuth:
    """Checks `Authorization: Basic` headers against bcrypt hashes.

    An unknown user costs one bcrypt check too, against a hash of the same cost
    made at load, so the time taken never tells which user names exist.
    """

    def __init__(self, users: dict[str, str], checkpw: Callable[[bytes, bytes], bool] = bcrypt.checkpw):
        self.users = {user: hashed.encode() for user, hashed in users.items()}
        self.checkpw = checkpw
        self._cost = max((_bcrypt_cost(h) for h in self.users.values()), default=10)
        self._unknown_user_hash: bytes | None = None  # made at the first unknown user, off the loop
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()

    def remembered(self, header: str | None) -> bool:
        """True if this exact header was verified before: a cheap check, safe on the event loop."""
        parsed = _parse(header)
        if parsed is None or parsed[0] not in self.users:
            return False
        with self._lock:
            return self._key(*parsed) in self._verified

    def allows(self, header: str | None) -> bool:
        parsed = _parse(header)
        if parsed is None:
            return False
        user, password = parsed
        hashed = self.users.get(user)
        if hashed is None:
            if self._unknown_user_hash is None:
                self._unknown_user_hash = bcrypt.hashpw(b"no such user", bcrypt.gensalt(rounds=self._cost))
            self._check(password, self._unknown_user_hash)  # the same work as a wrong password
            return False
        key = self._key(user, password)
        with self._lock:
            if key in self._verified:
                return True
        ok = self._check(password, hashed)
        if ok:
            with self._lock:
                self._verified.add(key)
        return ok

    def _check(self, password: str, hashed: bytes) -> bool:
        try:
            return self.checkpw(password.encode(), hashed)
        except ValueError:  # not a bcrypt hash; rejected at load, so only defensive
            return False

    def _key(self, user: str, password: str) -> bytes:
        return hashlib.sha256(user.encode() + b"\0" + password.encode() + b"\0" + self.users[user]).digest()


def _parse(header: str | None) -> tuple[str, str] | None:
    if not header or not header.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):  # a malformed header is a wrong one
        return None
    return user, password


def _bcrypt_cost(hashed: bytes) -> int:
    match = _BCRYPT.fullmatch(hashed.decode("ascii", errors="replace"))
    return int(match.group(1)) if match else 10


def _hash_problem(hashed: object) -> str | None:
    """Why `hashed` is not a usable bcrypt hash, or None."""
    if not isinstance(hashed, str):
        return "must be a bcrypt hash ($2a$, $2b$ or $2y$)"
    match = _BCRYPT.fullmatch(hashed)
    if match is None:
        return "must be a bcrypt hash ($2a$, $2b$ or $2y$, then the cost, then 53 characters)"
    if int(match.group(1)) not in BCRYPT_COSTS:
        return f"a bcrypt cost must be from 4 to 31, this one is {int(match.group(1))}"
    return None


def load_web_config(path: str | Path) -> WebConfig:
    """Parse and check a web config file; ConfigError lists every problem as `file:LINE: key: what`."""
    path = Path(path)
    text = read_text(path, "web config")
    document = YamlDocument(text, str(path))
    data = document.data or {}
    if not isinstance(data, dict):
        document.problem("", "must be a mapping")
        document.raise_problems()
    for key in data:
        if key not in ("tls_server_config", "basic_auth_users"):
            supported = "tls_server_config, basic_auth_users"
            document.problem(key, f"unknown or unsupported key (supported: {supported})")
    context = _tls_context(data.get("tls_server_config"), path.parent, document.problem)
    auth = None
    users = data.get("basic_auth_users")
    if users is not None:
        if not isinstance(users, dict) or not users:
            document.problem("basic_auth_users", "must map user names to bcrypt hashes")
        else:
            for user, hashed in users.items():
                problem = _hash_problem(hashed)
                if not isinstance(user, str) or not user or ":" in user:
                    document.problem(f"basic_auth_users.{user}", "a user name must be a string without ':'")
                elif problem is not None:
                    document.problem(f"basic_auth_users.{user}", problem)
            auth = BasicAuth({str(u): str(h) for u, h in users.items()})
    document.raise_problems()
    return WebConfig(ssl_context=context, basic_auth=auth)


def _reason(exc: OSError | ssl.SSLError) -> str:
    """`[Errno 2] No such file or directory` -> `No such file or directory`; SSL reasons as they are."""
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return exc.strerror or str(exc)


def _tls_context(raw: Any, base: Path, bad: Callable[[str, str], None]) -> ssl.SSLContext | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        bad("tls_server_config", "must be a mapping")
        return None
    allowed = {"cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version", "max_version"}
    for key in raw:
        if key not in allowed:
            bad(
                f"tls_server_config.{key}",
                f"unknown or unsupported key (supported: {', '.join(sorted(allowed))})",
            )
    wrong = False
    for name in ("cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version", "max_version"):
        if raw.get(name) is not None and (not isinstance(raw[name], str) or not raw[name]):
            bad(f"tls_server_config.{name}", "must be a non-empty string")
            wrong = True
    if wrong:
        return None
    cert, key = raw.get("cert_file"), raw.get("key_file")
    if not cert or not key:
        bad("tls_server_config", "needs both cert_file and key_file")
        return None
    ca = raw.get("client_ca_file")
    auth_type = raw.get("client_auth_type") or ("RequireAndVerifyClientCert" if ca else "NoClientCert")
    if auth_type not in CLIENT_AUTH:
        bad("tls_server_config.client_auth_type", f"must be one of {', '.join(CLIENT_AUTH)}")
        return None
    if CLIENT_AUTH[auth_type] != ssl.CERT_NONE and not ca:
        bad("tls_server_config.client_ca_file", f"is required with client_auth_type {auth_type}")
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for field, attr in (("min_version", "minimum_version"), ("max_version", "maximum_version")):
        if raw.get(field) is not None:
            if raw[field] not in TLS_VERSIONS:
                bad(f"tls_server_config.{field}", f"must be one of {', '.join(TLS_VERSIONS)}")
                return None
            setattr(context, attr, TLS_VERSIONS[raw[field]])
    for field in ("cert_file", "key_file"):
        if not (base / raw[field]).is_file():
            bad(f"tls_server_config.{field}", f"no such file: {base / raw[field]}")
            return None
    try:
        context.load_cert_chain(base / cert, base / key)
    except (OSError, ssl.SSLError) as exc:  # unreadable, not PEM, or a key that does not match
        bad("tls_server_config.cert_file", f"cannot load {base / cert} with {base / key}: {_reason(exc)}")
        return None
    context.verify_mode = CLIENT_AUTH[auth_type]
    if ca:
        try:
            context.load_verify_locations(cafile=base / ca)
        except (OSError, ssl.SSLError) as exc:
            bad("tls_server_config.client_ca_file", f"cannot load {base / ca}: {_reason(exc)}")
            return None
    return context
