"""Keys as they enter from files: a `value_file`, or the discovery keys directory.

A key goes into an HTTP header, so it is checked where it is read:

- only a regular file is read, and it is opened without blocking (`O_NONBLOCK`, then
  `fstat`): a FIFO, socket, device or directory where a key should be is refused at
  once, never waited on, so no key read can hang a reload or the key watcher;
- at most `MAX_KEY_BYTES` bytes are read (a 1 GB file costs no more than a small one);
- what is in them must look like a key: at least `MIN_KEY_LENGTH` printable ASCII
  characters with no whitespace inside and no byte-order mark (surrounding whitespace,
  a trailing newline say, is dropped). A file caught half-written (`e`) is refused,
  not used as a key, and so never reaches the redactor either.

In the keys directory only regular files inside it count, or symlinks that resolve
inside it (a mounted Kubernetes Secret is `name -> ..data/name`, `..data -> ..2026_…`);
a file that resolves anywhere else is refused, so a link cannot send the content of
another file upstream as a key.

`Secret` keeps a key out of every repr, log line and traceback; a `FileSecret`'s
value is replaced when its file changes on disk (`targets.KeyWatcher` looks), and
while the file holds no usable key it has none (`problem` says why).
Only the standard library: the config loader uses this too.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

MAX_KEY_BYTES = 4096
MIN_KEY_LENGTH = 16  # real keys are about 100 characters; fewer is a file caught half-written
_PRINTABLE_TOKEN = re.compile(r"[!-~]+")
_BOM = b"\xef\xbb\xbf"


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
    """A key read from `path`, replaced in place when the file changes (equal only to itself).

    While the file holds no usable key, `problem` says why and there is no key at all."""

    __slots__ = ("path", "problem")

    def __init__(self, value: str, path: Path):
        super().__init__(value)
        self.path = path
        self.problem: str | None = None

    def update(self, value: str) -> None:
        self._value, self.problem = value, None

    def spoil(self, problem: str) -> None:
        """The file no longer holds a usable key: no key until it does."""
        self._value, self.problem = "", problem

    def __eq__(self, other: object) -> bool:
        return other is self

    def __hash__(self) -> int:
        return id(self)


def usable_key(value: str) -> bool:
    """A key goes into an HTTP header: printable ASCII, no whitespace or control characters."""
    return _PRINTABLE_TOKEN.fullmatch(value) is not None


def read_key_file(path: Path) -> str:
    """The key in `path`, surrounding whitespace removed; KeyProblem when it cannot be used.

    Never blocks: anything but a regular file is refused before it is opened (and again after,
    in case it was swapped in between), and the open itself is O_NONBLOCK."""
    not_a_file = KeyProblem(f"{path} is not a regular file (a FIFO, socket, device or directory): not a key")
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise not_a_file
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise KeyProblem(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise not_a_file
        data = _read(fd, MAX_KEY_BYTES + 1)
    except OSError as exc:
        raise KeyProblem(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_BYTES:
        raise KeyProblem(f"{path} is larger than {MAX_KEY_BYTES} bytes: not a key")
    if data.startswith(_BOM):
        raise KeyProblem(f"{path} starts with a byte-order mark: save it as plain ASCII")
    key = data.decode("ascii", errors="replace").strip()
    if not key:
        raise KeyProblem(f"{path} is empty")
    if not usable_key(key):
        raise KeyProblem(f"the key in {path} is not usable: it must be printable ASCII with no spaces inside")
    if len(key) < MIN_KEY_LENGTH:
        raise KeyProblem(
            f"{path} holds {len(key)} characters, fewer than a key's {MIN_KEY_LENGTH}: "
            "written only in part, or not a key"
        )
    return key


def _read(fd: int, limit: int) -> bytes:
    parts, size = [], 0
    while size < limit:
        chunk = os.read(fd, limit - size)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


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
