"""The results store: every job keyed by its full configuration; atomic, resumable, never recomputed.

Layout: ROOT/<kind>/<name>-<key>/ holds config.json (written first), whatever the job produces, and
result.json (written last, atomically): a job is done exactly when result.json exists. A job killed
at any moment leaves no result.json and is simply run again; a finished job is never recomputed.
The key is a hash of the canonical JSON of the configuration, which includes a fingerprint of the
code that changes numbers (see replicate.config.code_fingerprint), so changed code means new jobs,
and writes the store's own path as $STORE (Store.portable): a copied or moved store still reads as
done, and two stores that computed the same things hold byte-identical config.json and result.json.
Runs sharing a store, on one machine or on many (the store on a shared filesystem), claim a job with
claim.json (Job.begin; see claim() for the rule): a second run waits for the job a live run holds
instead of clearing its directory, and then uses its result; a dead holder's claim is taken over.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from convert.errors import UserError
from convert.protoio import atomic_write

RESULT = "result.json"
CONFIG = "config.json"
HISTORY = "history.log"  # one line per attempt: start/resume/done, host, pid
STORE_PLACEHOLDER = "$STORE"   # the store's own path in keyed and recorded configurations
CLAIM = "claim.json"      # who computes the job now (see claim())


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

    def begin(self, resumable: Callable[[Path], bool] | None = None) -> Path:
        """Claim the job and start it afresh (or continue it): its directory holding its config and our claim.

        The claim is claim.json in the job directory (see `claim`), held until finish() or release().
        While another live process holds it, begin() waits; a job another process finished meanwhile
        is kept as it is: check `done` after begin() and release() to use its result. What a killed run
        left is cleared, unless `resumable(dir)` says it can be continued (a job with snapshots), which
        is judged only once the claim is ours. history.log, the job's attempts, is kept.
        """
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            claim(self.dir / CLAIM)
            if self.done:
                return self.dir
            if resumable is not None and resumable(self.dir):
                self._log("resume")
                return self.dir
            for entry in self.dir.iterdir():   # a partial run: everything in it is recomputed
                if entry.name not in (CLAIM, HISTORY):
                    shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            write_json(self.dir / CONFIG, self.portable_config)
            self._log("start")
        except OSError as e:
            raise UserError(f"{self.dir}: cannot start the {self.kind} job {self.name!r} ({e.strerror or e})") from None
        return self.dir

    def finish(self, result: dict) -> dict:
        """Record the result (the done marker) atomically, end the claim and return the result."""
        write_json(self.dir / RESULT, {"job": {"kind": self.kind, "name": self.name}, "config": self.portable_config,
                                       "result": result})
        self._log("done")
        self.release()
        return result

    def release(self) -> None:
        """End this process's claim on the job (after finish, or to give up without a result)."""
        unclaim(self.dir / CLAIM)

    def _log(self, event: str) -> None:
        """One line per attempt's start and end in history.log (the holder of the claim alone writes it)."""
        with open(self.dir / HISTORY, "a", encoding="utf-8") as log:
            log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {event} {HOST} {os.getpid()}\n")

    @property
    def holder(self) -> dict | None:
        """Who claims the job: {host, pid, started} of claim.json, or None."""
        return _read_claim(self.dir / CLAIM)

    @property
    def state(self) -> str:
        """done, running (a live process claims it), partial (killed, or a claim whose heartbeat stopped) or missing."""
        if self.done:
            return "done"
        if not self.dir.exists():
            return "missing"
        holder = self.holder
        if holder is None:
            return "partial"
        return "partial" if _dead(self.dir / CLAIM, holder) else "running"


# --------------------------------------------------------------------------------------- job claims
# A claim is claim.json ({host, pid, started, token}) made with an exclusive create, which is atomic on
# local filesystems and on NFS (a hard link of a complete temporary file: never a half-written claim).
# Its holder refreshes its mtime every HEARTBEAT_SECONDS from a daemon thread. A claim is taken over when
# its holder is a dead process on this host, or when its mtime has not moved for STALE_SECONDS of our own
# watching (clocks of other hosts are never compared with ours). Takeover renames the claim away (one
# rename wins), checks that what it moved is the claim it judged, and puts back a live one it raced with.
HEARTBEAT_SECONDS = 5.0    # how often a holder refreshes its claims
STALE_SECONDS = 60.0       # a claim not refreshed for this long (12 missed beats) belongs to a dead holder
POLL_SECONDS = 0.25        # how often a waiting process looks at a claim
HOST = socket.gethostname()

_CLAIMS: dict[Path, str] = {}   # claims this process holds: claim path -> token
_BEATING = threading.Lock()
_beat_thread: threading.Thread | None = None


def claim(path: Path) -> None:
    """Hold the claim file `path` (waiting while a live holder has it); reentrant in one process."""
    token = _CLAIMS.get(path)
    if token is not None and (_read_claim(path) or {}).get("token") == token:
        return
    _CLAIMS.pop(path, None)
    token = uuid.uuid4().hex
    body = json.dumps({"host": HOST, "pid": os.getpid(), "started": time.time(), "token": token}).encode()
    watched: tuple | None = None   # (the holder's token, its mtime, when we first saw that mtime)
    while True:
        if _create(path, body):
            _CLAIMS[path] = token
            _start_heartbeat()
            return
        holder, mtime = _read_claim(path), _mtime(path)
        if mtime is None:
            continue   # released just now
        key = ((holder or {}).get("token"), mtime)
        if watched is None or watched[:2] != key:
            watched = (*key, time.monotonic())
        if (holder is not None and _gone_here(holder)) or time.monotonic() - watched[2] > STALE_SECONDS:
            _take_over(path, watched[0])
            watched = None
            continue
        time.sleep(POLL_SECONDS)


def unclaim(path: Path) -> None:
    """Give up this process's claim `path` (nothing if it holds none)."""
    token = _CLAIMS.pop(path, None)
    if token is not None and (_read_claim(path) or {}).get("token") == token:
        path.unlink(missing_ok=True)


def _create(path: Path, body: bytes) -> bool:
    """Create `path` holding `body` atomically, only if it does not exist."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    temporary.write_bytes(body)
    try:
        os.link(temporary, path)
        return True
    except FileExistsError:
        return False
    finally:
        temporary.unlink()


def _take_over(path: Path, stale_token: str | None) -> None:
    """Move a dead holder's claim away; if a live claim was moved instead (a race), put it back."""
    moved = path.with_name(f".{path.name}.stale-{uuid.uuid4().hex}")
    try:
        os.rename(path, moved)
    except FileNotFoundError:
        return   # another process took it over first
    if (_read_claim(moved) or {}).get("token") != stale_token:
        try:
            os.link(moved, path)   # a live claim made in between: restore it
        except FileExistsError:
            pass
    moved.unlink()


def _read_claim(path: Path) -> dict | None:
    try:
        holder = json.loads(path.read_text())
        return holder if isinstance(holder, dict) and {"host", "pid", "token"} <= set(holder) else None
    except (OSError, ValueError):
        return None


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _dead(path: Path, holder: dict) -> bool:
    """Whether a claim's holder is gone: a dead process here, or no heartbeat for STALE_SECONDS (by our clock)."""
    if holder["host"] == HOST:
        return _gone_here(holder)
    mtime = _mtime(path)
    return mtime is None or time.time() - mtime > STALE_SECONDS


def _gone_here(holder: dict) -> bool:
    """Whether a claim's holder ran on this host and its process is gone (no heartbeat needs watching)."""
    if holder["host"] != HOST:
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except (ProcessLookupError, ValueError, OverflowError):
        return True
    except PermissionError:   # alive, another user's
        pass
    return False


def _start_heartbeat() -> None:
    """The daemon thread that refreshes every claim this process holds (one per process, started once)."""
    global _beat_thread
    with _BEATING:
        if _beat_thread is None or not _beat_thread.is_alive():
            _beat_thread = threading.Thread(target=_heartbeat, name="store-claims", daemon=True)
            _beat_thread.start()


def _heartbeat() -> None:
    while True:
        time.sleep(HEARTBEAT_SECONDS)
        for path in list(_CLAIMS):
            try:
                os.utime(path)
            except OSError:   # released meanwhile, or the store is briefly unreachable: next beat
                pass


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
