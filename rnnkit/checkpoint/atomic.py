"""Atomic writes: a crash or a full disk never leaves a half-written file, or a half-written checkpoint, behind.

    write_text_atomic(path, text)    # the text lands whole, or the old file (if any) stays as it was
    write_json(path, obj)            # the same for a JSON document (indented, one trailing newline)
    replace_folder(path, files)      # a checkpoint folder of several files, swapped in whole

A file goes to a temporary file in the same folder, is flushed to disk, and then replaces ``path`` in one
rename (os.replace, atomic on POSIX and Windows). Missing parent folders are created.

A checkpoint folder (one writer per path at a time) is written into a fresh sibling folder
``.<name>.tmp-<random>``, its files and the folder fsynced; only then it swaps:

1. if ``path`` exists, rename it to ``<name>.old``;
2. rename the temporary folder to ``path``;
3. delete ``<name>.old``.

``path`` therefore only ever appears by renaming a complete, fsynced folder. A crash before step 1 leaves
the old checkpoint at ``path`` (plus a stale temporary folder); between steps 1 and 2 -- the one small window --
there is nothing at ``path`` but the old checkpoint is complete at ``<name>.old``; after step 2 the new one
is at ``path`` (a crash in step 3 leaves a partly deleted ``<name>.old``, which readers ignore because
``path`` exists). Readers never look at temporary folders; `locate` falls back to ``<name>.old`` (with a
warning) when ``path`` is missing. The next save removes stale temporary folders and ``<name>.old`` (the
latter once a complete checkpoint is at ``path`` again).

A reader reads each file through a handle on the folder (`_Folder`), so a save renaming it meanwhile cannot
mix two versions; a file deleted under it raises `_Vanished`, and the reader tries again.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import warnings
from pathlib import Path

from .checks import MAX_JSON_BYTES, CheckpointError
from .format import CONFIG, MODEL


# -------------------------------------------------------------------------------------------------- files

def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically; returns the path."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = open_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_synced(f, data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def open_temporary(path: Path) -> tuple[int, str]:
    """(a descriptor open for writing, its name): a new temporary file beside `path`, to be renamed over it,
    with the permissions a plain open() would leave: those of the file it replaces, else 0666 less the umask
    (the kernel applies it). tempfile.mkstemp's 0600 made figures and reports unreadable to the user's group
    and to others, where the file written in place had been readable."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:  # a name taken (2^-48): draw another
            continue
    if mode is not None:
        os.chmod(tmp, mode)
    return fd, tmp


# the first bytes of each kind of file a command writes where the user names it
SIGNATURES = {"png": (b"\x89PNG\r\n\x1a\n",), "svg": (b"<?xml", b"<svg"), "json": (b"{", b"[")}


def check_output(path: str | os.PathLike, kind: str) -> Path:
    """`path`, if a `kind` file (png, svg, json) may be written there: nothing is there, an empty file, or a
    file of that kind (replaced: the user named it). Anything else there (the data, a checkpoint, a folder)
    is refused, so an output path given by mistake, `--plot sales.csv` say, never overwrites what the user
    made. Files are told apart by their first bytes."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return path
    if not path.is_file():
        raise FileExistsError(f"{path} exists and is not a file; name a .{kind} file to write")
    with open(path, "rb") as f:
        head = f.read(256).lstrip()
    if head and not head.startswith(SIGNATURES[kind]):
        raise FileExistsError(f"{path} exists and is not a {kind.upper()} file: refusing to replace it with one "
                              f"(name another file, or remove it first)")
    return path


def write_json(path: str | os.PathLike, obj) -> Path:
    """`obj` as indented JSON, written atomically (a value JSON cannot hold raises before anything is written)."""
    return write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def update_json(path: str | os.PathLike, values: dict) -> Path:
    """The JSON object at `path` with `values` merged in (keys not in `values` kept), written atomically; a
    missing or unreadable file counts as empty. Benchmarks save after each part this way, so a run that stops
    keeps what it measured and the parts it did not run keep their earlier results."""
    try:
        merged = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        merged = {}
    if not isinstance(merged, dict):
        merged = {}
    merged.update(values)
    return write_json(path, merged)


def _write_synced(f, data) -> None:
    """Write ``data`` to the open file ``f`` and fsync it."""
    f.write(data)
    f.flush()
    os.fsync(f.fileno())


# ------------------------------------------------------------------------------------ checkpoint folders

def replace_folder(path: Path, files: dict[str, bytes]) -> None:
    """Put a folder holding ``files`` at the absolute ``path``, replacing the checkpoint there in one swap."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _check_replaceable(path)
    _remove_stale(path)
    tmp = _write_temp(path, files)
    if path.is_dir():  # the folder keeps the permissions it had (a user's chmod 700 stays)
        os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
    _swap(tmp, path)


def aside(path: Path) -> Path:
    """Where the previous checkpoint waits during a swap."""
    return path.with_name(path.name + ".old")


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.tmp-"


def _check_replaceable(path: Path) -> None:
    """Refuse to replace anything but a checkpoint folder or an empty folder."""
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir() or (any(path.iterdir()) and not (path / CONFIG).is_file()):
        raise FileExistsError(f"{path} exists and is not a checkpoint folder; refusing to replace it")


def _remove_stale(path: Path) -> None:
    """Delete temporary folders of crashed saves, and ``<name>.old`` if a complete checkpoint is at ``path``."""
    prefix = _temp_prefix(path)
    for p in path.parent.iterdir():
        if p.name.startswith(prefix) and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
    if path.is_dir() and aside(path).is_dir():
        shutil.rmtree(aside(path))


def _write_temp(path: Path, files: dict[str, bytes]) -> Path:
    """Write ``files`` into a new temporary sibling folder, fsynced; removed again if writing fails."""
    tmp = path.with_name(_temp_prefix(path) + secrets.token_hex(8))
    tmp.mkdir()
    try:
        for name, data in files.items():
            _write_file(tmp / name, data)
        _fsync_dir(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def _write_file(path: Path, data: bytes) -> None:
    """Write and fsync one new file."""
    with open(path, "xb") as f:
        _write_synced(f, data)


def _fsync_dir(path: Path) -> None:
    """Make renames and new entries in a folder durable (POSIX; a no-op on Windows)."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap(tmp: Path, path: Path) -> None:
    """Put the complete folder ``tmp`` at ``path``; see the module docstring for the crash argument."""
    old = aside(path)
    if path.exists():
        os.replace(path, old)
        _fsync_dir(path.parent)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- reading

class _Vanished(CheckpointError):
    """A folder or file that disappeared while loading: worth another try (a save may be swapping)."""


def locate(path: Path) -> Path:
    """The folder to read: ``path``, or ``<name>.old`` left by a save interrupted between its renames."""
    try:
        if stat.S_ISDIR(os.stat(path).st_mode):
            return path
        raise CheckpointError(f"{path}: not a checkpoint folder (a folder with {CONFIG} and {MODEL})")
    except FileNotFoundError:
        pass
    old = aside(path)
    if old.is_dir():
        warnings.warn(f"no checkpoint at {path}: a save was interrupted between its two renames; loading the "
                      f"previous checkpoint from {old}. The next save to {path} cleans up, or rename {old} "
                      f"to {path} by hand.", RuntimeWarning, stacklevel=4)   # the caller of load_checkpoint
        return old
    raise CheckpointError(f"{path}: no checkpoint there")


class _Folder:
    """A checkpoint folder opened once: every file comes from the same copy even if a save renames it."""

    def __init__(self, path: Path):
        self.path = path
        self.fd = None
        if os.open in os.supports_dir_fd:
            try:
                self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            except FileNotFoundError:
                raise _Vanished(f"{path}: vanished while loading") from None
            except OSError as e:
                raise CheckpointError(f"{path}: cannot open the checkpoint folder ({e})") from e

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)

    def where(self, name: str) -> Path:
        return self.path / name

    def read(self, name: str, size: int | None = None, limit: int = MAX_JSON_BYTES) -> bytes:
        """The bytes of a regular file, which must be ``size`` bytes long (or at most ``limit``)."""
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)     # a FIFO planted here must not block us
        try:
            if self.fd is not None:
                fd = os.open(name, flags, dir_fd=self.fd)
            else:
                fd = os.open(self.where(name), flags)
        except FileNotFoundError:
            raise _Vanished(f"{self.where(name)}: missing") from None
        except OSError as e:
            raise CheckpointError(f"{self.where(name)}: cannot open ({e})") from e
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise CheckpointError(f"{self.where(name)}: not a regular file")
            if size is not None and st.st_size != size:
                raise CheckpointError(f"{self.where(name)}: {st.st_size} bytes, but {CONFIG} records {size}: "
                                      "the file was truncated or changed")
            if size is None and st.st_size > limit:
                raise CheckpointError(f"{self.where(name)}: {st.st_size} bytes, more than {limit} allowed")
            data = fh.read(st.st_size)
        if len(data) != st.st_size:
            raise CheckpointError(f"{self.where(name)}: changed while being read")
        return data
