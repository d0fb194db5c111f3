"""The results store: every job keyed by its full configuration; atomic, resumable, never recomputed.

Layout: ROOT/<kind>/<name>-<key>/ holds config.json (written first), whatever the job produces, and
result.json (written last, atomically): a job is done exactly when result.json exists. A job killed
at any moment leaves no result.json and is simply run again; a finished job is never recomputed.
The key is a hash of the canonical JSON of the configuration, which includes a fingerprint of the
code that changes numbers (see replicate.config.code_fingerprint), so changed code means new jobs,
and writes the store's own path as $STORE (Store.portable): a copied or moved store still reads as
done, and two stores that computed the same things hold byte-identical config.json and result.json.
Runs sharing a store claim a job with an exclusive flock on its job.lock (Job.begin): a second run
waits for the job a live run holds instead of clearing its directory, and then uses its result.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from convert.errors import UserError
from convert.protoio import atomic_write

RESULT = "result.json"
CONFIG = "config.json"
RUNNING = "running.pid"
STORE_PLACEHOLDER = "$STORE"   # the store's own path in keyed and recorded configurations
LOCK = "job.lock"


def config_key(config: dict[str, Any]) -> str:
    """A short stable hash of a JSON-serialisable configuration."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    atomic_write(path, (json.dumps(data, indent=1, sort_keys=True, default=str) + "\n").encode())


@dataclass(frozen=True)
class Job:
    """One unit of work: a kind (e.g. "train"), a human name (e.g. the net) and its configuration."""
    store: "Store"
    kind: str
    name: str
    config: dict

    @property
    def dir(self) -> Path:
        return self.store.root / self.kind / f"{self.name}-{config_key(self.portable_config)}"

    @property
    def portable_config(self) -> dict:
        """The configuration with the store's own path written as $STORE: what the key hashes and the files record."""
        return self.store.portable(self.config)

    @property
    def done(self) -> bool:
        return (self.dir / RESULT).exists()

    def result(self) -> dict:
        """The stored result; a corrupt entry is a UserError naming it and the way to rebuild it."""
        path = self.dir / RESULT
        try:
            return json.loads(path.read_text())["result"]
        except FileNotFoundError:
            raise UserError(f"results store: {self.kind} job {self.name!r} has not finished ({self.dir})") from None
        except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as e:
            raise UserError(f"results store: entry {path} is corrupt ({e}); rerun with --rebuild {self.name}") from None

    def begin(self) -> Path:
        """Claim the job and start it afresh: its directory holding only its config and our pid.

        The claim is an exclusive flock on job.lock in the directory, held until finish() or release()
        (or this process's end: the kernel drops it when its holder dies). While another live process
        holds it, begin() waits; what a killed run left is cleared, but a job another process finished
        meanwhile is kept as it is: check `done` after begin() and release() to use its result.
        """
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            _claim(self.dir / LOCK)
            if self.done:
                return self.dir
            for entry in self.dir.iterdir():   # a partial run: everything in it is recomputed
                if entry.name != LOCK:
                    shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            write_json(self.dir / CONFIG, self.portable_config)
            atomic_write(self.dir / RUNNING, str(os.getpid()).encode())
        except OSError as e:
            raise UserError(f"{self.dir}: cannot start the {self.kind} job {self.name!r} ({e.strerror or e})") from None
        return self.dir

    def finish(self, result: dict) -> dict:
        """Record the result (the done marker) atomically, end the claim and return the result."""
        write_json(self.dir / RESULT, {"job": {"kind": self.kind, "name": self.name}, "config": self.portable_config,
                                       "result": result})
        (self.dir / RUNNING).unlink(missing_ok=True)
        self.release()
        return result

    def release(self) -> None:
        """End this process's claim on the job (after finish, or to give up without a result)."""
        _release(self.dir / LOCK)

    @property
    def state(self) -> str:
        """done, running (a live process holds its claim), partial (killed) or missing."""
        if self.done:
            return "done"
        if not self.dir.exists():
            return "missing"
        held, alive = _held(self.dir / LOCK), _alive(self.dir / RUNNING)
        return "running" if held is not False and alive is not False and (held or alive) else "partial"


# Claims this process holds: lock path -> open descriptor with the flock.
_CLAIMS: dict[Path, int] = {}


def _claim(lock: Path) -> None:
    """Hold an exclusive flock on lock (blocking while another process holds it); reentrant in one process."""
    fd = _CLAIMS.get(lock)
    if fd is not None:
        try:
            if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                return
        except FileNotFoundError:   # the job directory was removed (--rebuild) under our claim
            pass
        _release(lock)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    _CLAIMS[lock] = fd


def _release(lock: Path) -> None:
    fd = _CLAIMS.pop(lock, None)
    if fd is not None:
        os.close(fd)   # closing drops the flock


def _held(lock: Path) -> bool | None:
    """Whether a process holds the job's claim (None: no lock file, a store of older code)."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _alive(pid_file: Path) -> bool | None:
    """Whether the pid in the file is a live process here (None: no readable pid file)."""
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # alive, another user's
        pass
    return True


class Store:
    """A directory of jobs."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()   # absolute: jobs resolve their own files against their directory

    def portable(self, value: Any) -> Any:
        """`value` with every occurrence of this store's path in its strings written as $STORE.

        Jobs refer to their data inside the store by absolute paths (the solver needs them); keyed and
        recorded as $STORE, a store copied or moved elsewhere still reads as done, and two stores that
        computed the same things hold byte-identical results.
        """
        if isinstance(value, str):
            return value.replace(str(self.root), STORE_PLACEHOLDER)
        if isinstance(value, dict):
            return {k: self.portable(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.portable(v) for v in value]
        return value

    def job(self, kind: str, name: str, config: dict) -> Job:
        return Job(self, kind, name, config)

    def entries(self, kind: str, name: str | None = None) -> Iterator[Path]:
        """Job directories of a kind (optionally of one name), whatever their configuration."""
        base = self.root / kind
        if not base.is_dir():
            return iter(())
        return (p for p in sorted(base.iterdir()) if p.is_dir() and (name is None or p.name.rsplit("-", 1)[0] == name))

    def rebuild(self, name: str, kinds: list[str] | None = None) -> int:
        """Delete the stored jobs of that name (of the given kinds, or of any) so they are recomputed; return how many."""
        removed = 0
        for kind in kinds if kinds is not None else [p.name for p in self.root.glob("*") if p.is_dir()]:
            for entry in self.entries(kind, name):
                shutil.rmtree(entry)
                removed += 1
        return removed
