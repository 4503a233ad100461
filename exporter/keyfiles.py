"""Keys as they enter from files: a `value_file`, or the discovery keys directory.

A key goes into an HTTP header, so it is checked where it is read: at most
`MAX_KEY_BYTES` bytes are read (a 1 GB file costs no more than a small one),
and what is in them must be printable ASCII with no spaces inside. In the keys
directory only regular files inside it count, or symlinks that resolve inside it
(a mounted Kubernetes Secret is `name -> ..data/name`, `..data -> ..2026_…`); a
file that resolves anywhere else is refused, so a link cannot send the content of
another file upstream as a key.

`Secret` keeps a key out of every repr, log line and traceback; a `FileSecret`'s
value is replaced when its file changes on disk (`targets.KeyWatcher` looks).
Only the standard library: the config loader uses this too.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

MAX_KEY_BYTES = 4096
_PRINTABLE_TOKEN = re.compile(r"[!-~]+")


class KeyProblem(Exception):
    """A key file that cannot be used; the message says why in one line, never with the key."""


class Secret:
    """A credential value that never shows itself in repr, str or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class FileSecret(Secret):
    """A key read from `path`, replaced in place when the file changes (equal only to itself)."""

    __slots__ = ("path",)

    def __init__(self, value: str, path: Path):
        super().__init__(value)
        self.path = path

    def update(self, value: str) -> None:
        self._value = value

    def __eq__(self, other: object) -> bool:
        return other is self

    def __hash__(self) -> int:
        return id(self)


def usable_key(value: str) -> bool:
    """A key goes into an HTTP header: printable ASCII, no whitespace or control characters."""
    return _PRINTABLE_TOKEN.fullmatch(value) is not None


def read_key_file(path: Path) -> str:
    """The key in `path`, surrounding whitespace removed; KeyProblem when it cannot be used."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_KEY_BYTES + 1)
    except OSError as exc:
        raise KeyProblem(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    if len(data) > MAX_KEY_BYTES:
        raise KeyProblem(f"{path} is larger than {MAX_KEY_BYTES} bytes: not a key")
    key = data.decode("ascii", errors="replace").strip()
    if not key:
        raise KeyProblem(f"{path} is empty")
    if not usable_key(key):
        raise KeyProblem(f"the key in {path} is not usable: it must be printable ASCII with no spaces inside")
    return key


def stamp(path: Path) -> tuple[int, int, int] | None:
    """Changes whenever the file at `path` (followed through links) is replaced or rewritten."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _entries(keys_dir: Path) -> list[os.DirEntry[str]]:
    """The directory's entries that may hold a key: not hidden (a Secret's ..data and friends)."""
    return sorted((e for e in os.scandir(keys_dir) if not e.name.startswith(".")), key=lambda e: e.name)


def stamp_dir(keys_dir: Path) -> tuple[object, ...]:
    """Changes whenever a key file is added, removed, replaced or rewritten (a Secret's update too)."""
    try:
        return (stamp(keys_dir), *((e.name, stamp(Path(e.path))) for e in _entries(keys_dir)))
    except OSError:  # the directory went away: no keys until it is back
        return ()


def read_keys_dir(keys_dir: Path) -> dict[str, str | KeyProblem]:
    """Each file's name and its key, or why it cannot be used. Blocking: run it in a thread."""
    try:
        root = os.path.realpath(keys_dir)
        entries = _entries(keys_dir)
    except OSError:  # the directory went away: no keys until it is back
        return {}
    found: dict[str, str | KeyProblem] = {}
    for entry in entries:
        real = os.path.realpath(entry.path)
        try:
            mode = os.stat(real).st_mode
        except OSError:  # a dangling link: as good as missing
            continue
        if not stat.S_ISREG(mode):  # a directory, a socket, a device
            continue
        if os.path.commonpath([root, real]) != root:
            found[entry.name] = KeyProblem(f"{entry.path} resolves outside {keys_dir}: not used")
            continue
        try:
            found[entry.name] = read_key_file(Path(real))
        except KeyProblem as exc:
            found[entry.name] = exc
    return found
