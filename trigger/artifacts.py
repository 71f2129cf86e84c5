"""Stage output directories: built whole, sealed with what made them, replaced only with care.

Every directory a stage writes (runs/NAME, firmware/NAME, validation/NAME, a monitor's report)
is built under a temporary name and renamed once complete, with `artifact.json` inside:

    stage      the command that wrote it: train-and-compress, emit-hls, validate or monitor
    files      {relative path: sha256} of everything it held when complete
    identity   one hash over `files`: what a downstream stage records as its source; derived
               again from `files` on every open, so an edited identity is refused
    sources    what it was made from: identities of the data file, the run, the firmware,
               and digests of the recipe sections the stage read

A downstream stage opens its input through `open_artifact`, which refuses a directory that is
not a complete output of the expected stage or whose files changed since. `trigger run` calls a
stage again when `current` finds its output missing, changed, or made from other sources.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from trigger.errors import TriggerError
from trigger.io import (
    atomic_path,
    check_writable,
    remove_stale_temporaries,
    require_file,
    write_json,
)

MARKER = "artifact.json"
TRAIN = "train-and-compress"
EMIT = "emit-hls"
VALIDATE = "validate"
MONITOR = "monitor"


@dataclass(frozen=True)
class Artifact:
    """A sealed stage output, as its `artifact.json` describes it."""

    path: Path
    stage: str
    identity: str
    files: dict[str, str]
    sources: dict[str, str]


def file_digest(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_identity(path: str | Path) -> str:
    """Content hash of a data file (hashed once per process while its size and time hold)."""
    path = require_file(path).resolve()
    stat = path.stat()
    return _cached_digest(path, stat.st_size, stat.st_mtime_ns, stat.st_ino)[:16]


@functools.lru_cache(maxsize=16)
def _cached_digest(path: Path, _size: int, _mtime_ns: int, _inode: int) -> str:
    return file_digest(path)


def _identity(files: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]


def _files(directory: Path) -> dict[str, str]:
    return {
        path.relative_to(directory).as_posix(): file_digest(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and not path.is_symlink() and path.name != MARKER
    }


def seal(directory: Path, stage: str, sources: dict[str, str]) -> Artifact:
    """Record every file of a complete output, its identity and its sources."""
    files = _files(directory)
    artifact = Artifact(directory, stage, _identity(files), files, dict(sources))
    payload = {"stage": stage, "identity": artifact.identity, "sources": artifact.sources}
    write_json(directory / MARKER, payload | {"files": files})
    return artifact


def read_artifact(directory: str | Path) -> Artifact | None:
    """The directory's seal as written, unchecked; None when it has none."""
    directory = Path(directory)
    try:
        payload = json.loads((directory / MARKER).read_text())
        return Artifact(
            directory,
            str(payload["stage"]),
            str(payload["identity"]),
            dict(payload["files"]),
            dict(payload["sources"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def open_artifact(directory: str | Path, stage: str) -> Artifact:
    """The sealed output of `stage` at `directory`, every file checked against its seal."""
    directory = Path(directory)
    if not directory.is_dir():
        msg = f"{directory} not found (run `trigger {stage}` first)"
        raise TriggerError(msg)
    artifact = read_artifact(directory)
    if artifact is None:
        msg = f"{directory}: not a complete `trigger {stage}` output (it has no {MARKER})"
        raise TriggerError(msg)
    if artifact.stage != stage:
        msg = f"{directory} was written by `trigger {artifact.stage}`, not `trigger {stage}`"
        raise TriggerError(msg)
    if artifact.identity != _identity(artifact.files):
        msg = f"{directory}: the identity in {MARKER} is not the one its files give (rerun it)"
        raise TriggerError(msg)
    for name, digest in artifact.files.items():
        path = directory / name
        if not path.is_file():
            msg = f"{directory}: {name} is missing (rerun `trigger {stage}`)"
            raise TriggerError(msg)
        if file_digest(path) != digest:
            msg = f"{directory}: {name} changed after `trigger {stage}` wrote it (rerun it)"
            raise TriggerError(msg)
    return artifact


def current(directory: str | Path, stage: str, sources: dict[str, str]) -> bool:
    """Whether `directory` is an intact output of `stage` made from exactly `sources`."""
    try:
        return open_artifact(directory, stage).sources == sources
    except TriggerError:
        return False


def require_source(artifact: Artifact, key: str, upstream: Artifact) -> None:
    """Refuse `artifact` unless it was made from `upstream` (e.g. firmware from this run)."""
    recorded = artifact.sources.get(key)
    if recorded != upstream.identity:
        msg = (
            f"{artifact.path} was made from another {key} ({recorded}) than {upstream.path} "
            f"({upstream.identity}): run `trigger {artifact.stage}` on {upstream.path} first"
        )
        raise TriggerError(msg)


def training_data(run: Artifact, recorded: str | Path, given: str | Path | None = None) -> Path:
    """The data file `run` was trained on: `given` (the file moved), else the path its recipe
    recorded; refused unless its content is the one the run records."""
    path = require_file(given or recorded, "the run's training data")
    if data_identity(path) != run.sources.get("data"):
        msg = (
            f"{path} is not the data file {run.path} was trained on (its content differs): "
            "pass that file with --reference-data"
        )
        raise TriggerError(msg)
    return path


def _untracked(directory: Path) -> list[str]:
    artifact = read_artifact(directory)
    tracked = set(artifact.files) | {MARKER} if artifact else {MARKER}
    return [
        path.relative_to(directory).as_posix()
        for path in sorted(directory.rglob("*"))
        if not path.is_dir() and path.relative_to(directory).as_posix() not in tracked
    ]


def check_replaceable(out: Path, stage: str, replace: bool) -> None:
    """Refuse an `out` that holds anything but an earlier output of `stage` (and, without
    `replace`, that too). An empty directory holds nothing to lose."""
    if not (out.exists() or out.is_symlink()):
        return
    if out.is_dir() and not out.is_symlink() and not any(out.iterdir()):
        return
    artifact = read_artifact(out) if out.is_dir() else None
    if artifact is None or artifact.stage != stage:
        if not out.is_dir():
            what = "not a directory"
        elif artifact is None:
            what = "a directory that no trigger stage wrote"
        else:
            what = f"an output of `trigger {artifact.stage}`"
        msg = f"{out} exists and is {what}: choose another output directory (nothing was changed)"
        raise TriggerError(msg)
    if not replace:
        msg = f"{out} holds an earlier `trigger {stage}` output: pass --force to replace it"
        raise TriggerError(msg)
    foreign = _untracked(out)
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        msg = (
            f"{out} holds files trigger did not write ({', '.join(foreign[:3])}{more}): "
            "move them, or choose another output"
        )
        raise TriggerError(msg)


def check_output(
    out: str | Path, stage: str, inputs: Iterable[str | Path] = (), replace: bool = False
) -> None:
    """Refuse, with nothing touched, an `out` that overlaps one of the stage's inputs or that
    holds anything but an earlier output of the same stage (that too without `replace`)."""
    out = Path(out)
    remove_stale_temporaries(out)
    target = out.resolve()
    for source in inputs:
        source_path = Path(source).resolve()
        if target == source_path or source_path in target.parents or target in source_path.parents:
            msg = f"output {out} overlaps this stage's input {source}: choose another output"
            raise TriggerError(msg)
    check_replaceable(out, stage, replace)
    check_writable(out)


@contextlib.contextmanager
def stage_output(
    out: str | Path,
    stage: str,
    sources: dict[str, str],
    *,
    inputs: Iterable[str | Path] = (),
    replace: bool = False,
) -> Iterator[Path]:
    """A fresh temporary directory that becomes the sealed `out` when the block succeeds.

    `check_output` runs first, and again just before the rename: whatever a user put at `out`
    while the stage worked is not replaced either.
    """
    out = Path(out)
    check_output(out, stage, inputs, replace)
    with atomic_path(out, lambda final: check_replaceable(final, stage, replace)) as tmp:
        tmp.mkdir()
        yield tmp
        seal(tmp, stage, sources)
