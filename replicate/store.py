"""The results store: every job keyed by its full configuration; atomic, resumable, never recomputed.

Layout: ROOT/<kind>/<name>-<key>/ holds config.json (written first), whatever the job produces, and
result.json (written last, atomically): a job is done exactly when result.json exists. A job killed
at any moment leaves no result.json and is simply run again; a finished job is never recomputed.
The key is a hash of the canonical JSON of the configuration, which includes a fingerprint of the
code that changes numbers (see replicate.config.code_fingerprint), so changed code means new jobs.
"""
from __future__ import annotations

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
        return self.store.root / self.kind / f"{self.name}-{config_key(self.config)}"

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
        """Start (or restart) the job: a fresh directory holding its config and our pid."""
        if self.dir.exists():
            shutil.rmtree(self.dir)  # a partial run: everything in it is recomputed
        self.dir.mkdir(parents=True)
        write_json(self.dir / CONFIG, self.config)
        (self.dir / RUNNING).write_text(str(os.getpid()))
        return self.dir

    def finish(self, result: dict) -> dict:
        """Record the result (the done marker) atomically and return it."""
        write_json(self.dir / RESULT, {"job": {"kind": self.kind, "name": self.name}, "config": self.config,
                                       "result": result})
        (self.dir / RUNNING).unlink(missing_ok=True)
        return result

    @property
    def state(self) -> str:
        """done, running (its process is alive), partial (killed) or missing."""
        if self.done:
            return "done"
        pid_file = self.dir / RUNNING
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), 0)
                return "running"
            except (ValueError, ProcessLookupError, PermissionError):
                return "partial"
        return "partial" if self.dir.exists() else "missing"


class Store:
    """A directory of jobs."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()   # absolute: jobs resolve their own files against their directory

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
