"""Atomic artifact writing (a reader never sees a half-written file) and the log callback type."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from trigger.errors import TriggerError

# What stages take to report progress, one line per call (the CLI passes click.echo).
Log = Callable[[str], None]

# `.NAME.tmp-PID` is being built; `.NAME.old-PID` is the output it replaces, for a moment.
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)$")


@contextlib.contextmanager
def atomic_path(
    final: str | Path, before_replace: Callable[[Path], None] | None = None
) -> Iterator[Path]:
    """Yield a temporary sibling of `final`; rename it into place only if the block succeeds.

    Works for files and directories alike. On failure the temporary is removed; temporaries
    left by killed processes are removed before a new one is made. A directory replaces an
    existing one by two renames, so a reader sees the old or the new directory, never a mix.
    `before_replace(final)` runs just before the swap (a last check that it may go).
    """
    final = Path(final)
    make_parent(final)
    remove_stale_temporaries(final)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
        if before_replace is not None and final.exists():
            before_replace(final)
        if final.is_dir() and not final.is_symlink():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            _remove(old)
        else:
            os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def only_writer(final: Path, busy: str) -> Iterator[None]:
    """Hold `.FINAL.lock` for the block; `busy` is the one-line error when another process
    holds it (two writers would share, and delete, each other's partial work)."""
    make_parent(final)
    lock = final.with_name(f".{final.name}.lock")
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TriggerError(busy) from None
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)


def check_file_output(
    out: Path,
    command: str,
    written_by: Callable[[Path], bool],
    *,
    inputs: Iterable[str | Path] = (),
    replace: bool = False,
) -> None:
    """Refuse, with nothing touched, a file output that is one of the command's inputs, that
    holds anything `trigger COMMAND` did not write (`written_by` tells), or, without `replace`,
    an earlier output of it: the rule every stage directory follows, for single files."""
    for source in inputs:
        if out.resolve() == Path(source).resolve():
            msg = f"output {out} is this command's input {source}: choose another output"
            raise TriggerError(msg)
    if out.is_dir():
        msg = f"{out} is a directory: name a file to write"
        raise TriggerError(msg)
    if out.exists() or out.is_symlink():
        if out.is_symlink() or not written_by(out):
            msg = f"{out} exists and `trigger {command}` did not write it: choose another output"
            raise TriggerError(msg)
        if not replace:
            msg = f"{out} holds an earlier `trigger {command}` output: pass --force to replace it"
            raise TriggerError(msg)
    check_writable(out)


def require_file(path: str | Path, what: str = "data file") -> Path:
    """`path` if it is a file; else a one-line error that says where a relative path was
    looked for (it depends on where the user stands)."""
    path = Path(path)
    if not path.is_file():
        where = "" if path.is_absolute() else f" (looked for in {Path.cwd()})"
        msg = f"{what} not found: {path}{where}"
        raise TriggerError(msg)
    return path


def check_writable(final: Path) -> None:
    """Say in one line why `final` cannot be written, without creating anything."""
    existing = final.absolute().parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        msg = f"cannot write {final}: {existing} is a file, not a directory"
        raise TriggerError(msg)
    if not os.access(existing, os.W_OK):
        read_only = os.statvfs(existing).f_flag & os.ST_RDONLY
        reason = "read-only file system" if read_only else f"no permission to write in {existing}"
        msg = f"cannot write {final}: {reason}"
        raise TriggerError(msg)


def make_parent(final: Path) -> None:
    """Create `final`'s directory, or say in one line why `final` cannot be written there."""
    check_writable(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        msg = f"cannot write {final}: {error.strerror.lower()}"
        raise TriggerError(msg) from None


def remove_stale_temporaries(final: Path) -> None:
    """Clear what processes killed mid-way left beside `final`.

    A half-built `.NAME.tmp-PID` is removed. A `.NAME.old-PID` is the complete output a killed
    process was swapping out: it goes back into place when `final` is missing, else it goes.
    """
    if not final.parent.is_dir():
        return
    for sibling in sorted(final.parent.iterdir()):
        match = _TEMPORARY.match(sibling.name)
        if not match or match["name"] != final.name or _alive(int(match["pid"])):
            continue
        if match["kind"] == "old" and not final.exists():
            os.replace(sibling, final)
        else:
            _remove(sibling)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftovers from an earlier failure in this process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_json(path: str | Path, payload: Any) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return Path(path)
