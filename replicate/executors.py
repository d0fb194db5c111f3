"""Where store jobs run: a local pool of spawned processes (default) or a Ray cluster (`--executor ray`).

    with executor_for("ray", workers=2, device="cpu", address=None) as executor:
        executor.check(store, data_paths)           # the workers see this store, code and data
        for result in executor.map(run_job, tasks): ...   # unordered, as each job finishes

Every task is a store job: the worker writes the job's files to the store itself (the store is on a
filesystem every worker mounts at the same path) and returns only the small result; the store's claims
(replicate.store.claim) make sure no two workers, drivers or retries compute one job at once.

local   one spawned process of one thread per task at a time, `--workers` of them (today's pool).
ray     one Ray task per job (num_cpus 1, num_gpus 1 with --device cuda), retried up to RAY_RETRIES times
        when its worker process dies. `--ray-address auto` joins the cluster this machine belongs to
        (`ray start` ran here), `--ray-address HOST:PORT` a given one; without it a local Ray instance
        of `--workers` CPUs is started for the run and stopped after it.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from convert import memory
from convert.errors import UserError
from replicate.config import FINETUNE_CODE, code_fingerprint

EXECUTORS = ("local", "ray")
RAY_RETRIES = 3   # retries of a task whose worker died (a killed or preempted node); errors are not retried
RAY_INSTALL = "pip install 'caffe-replicate[ray]' (or ray==2.60.0)"


class Executor:
    """Where tasks run: check() before the first map(), map() yields results as tasks finish, close() at the end."""
    name = ""

    def check(self, store_root: Path, paths: Sequence[Path]) -> None:
        """UserError unless every worker sees the store at `store_root`, the `paths` and this code."""

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[Any]:
        """fn(task) for every task, each result as soon as its task is done (unordered)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the executor holds between maps."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalExecutor(Executor):
    """Tasks in spawned worker processes of one thread each (replicate.pipeline.worker_init)."""
    name = "local"

    def __init__(self, workers: int = 1):
        self.workers = workers

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[Any]:
        if not tasks:
            return
        from replicate.pipeline import worker_init   # the workers are this machine's processes: nothing to check
        with mp.get_context("spawn").Pool(max(1, min(self.workers, len(tasks))), initializer=worker_init) as pool:
            yield from pool.imap_unordered(fn, tasks)


def _ray():
    try:
        import ray
    except ImportError:
        raise UserError(f"--executor ray: Ray is not installed in this environment; {RAY_INSTALL}") from None
    return ray


_WORKER_READY = False


def _in_ray_worker(fn: Callable[[Any], Any], task: Any) -> Any:
    """A task's body in a Ray worker: one thread (as the local pool's workers), then the job."""
    global _WORKER_READY
    if not _WORKER_READY:
        from replicate.pipeline import worker_init
        worker_init()
        _WORKER_READY = True
    return fn(task)


def _probe(token_file: str, paths: list[str]) -> dict:
    """What one node sees: its host, the driver's token in the store (or why not), its code, the data."""
    import socket
    try:
        token = Path(token_file).read_text()
    except OSError as e:
        token = f"unreadable ({e.strerror or e})"
    return {"host": socket.gethostname(), "token": token, "code": code_fingerprint(FINETUNE_CODE),
            "missing": [p for p in paths if not Path(p).exists()]}


class RayExecutor(Executor):
    """Tasks on a Ray cluster (module docstring); the driver only dispatches and reads results."""
    name = "ray"

    def __init__(self, workers: int = 1, device: str = "cpu", address: str | None = None):
        ray = _ray()
        self.device, self.address, self._started = device, address, False
        env = {"env_vars": {memory.ENV: os.environ[memory.ENV]}} if memory.ENV in os.environ else None
        if address and address != "auto":
            _reachable(address)
        if ray.is_initialized():   # a caller (a test, a notebook) connected this process already
            return
        try:
            if address:
                ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False, runtime_env=env)
            else:
                ray.init(num_cpus=workers, num_gpus=1 if device == "cuda" else 0, include_dashboard=False,
                         logging_level=logging.ERROR, log_to_driver=False, runtime_env=env)
        except (ConnectionError, TimeoutError, RuntimeError, ValueError) as e:
            where = f"--ray-address {address}" if address else "--executor ray"
            raise UserError(f"{where}: cannot reach a Ray cluster ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                            "start one with `ray start --head` (then --ray-address auto), give the head's HOST:PORT, "
                            "or leave --ray-address out to start a local instance") from None
        self._started = True

    def check(self, store_root: Path, paths: Sequence[Path]) -> None:
        """Before dispatching: every alive node sees this store and data, and runs the same code; else UserError."""
        ray = _ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        probe_dir = Path(store_root) / ".probe"
        probe_dir.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        token_file = probe_dir / token
        token_file.write_text(token)
        try:
            refs = [ray.remote(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
                    (_probe).remote(str(token_file), [str(p) for p in paths])
                    for node in ray.nodes() if node.get("Alive")]
            seen = ray.get(refs)
        finally:
            token_file.unlink(missing_ok=True)
        ours = code_fingerprint(FINETUNE_CODE)
        for node in seen:
            if node["token"] != token:
                raise UserError(f"--executor ray: the worker on {node['host']} cannot see the results store at "
                                f"{store_root} (token {node['token'][:40]}); put --out on a filesystem every node "
                                "mounts at the same path (NFS; see the README)")
            if node["code"] != ours:
                raise UserError(f"--executor ray: the worker on {node['host']} runs code fingerprint {node['code']}, "
                                f"this driver {ours}; install the same commit of the project on every node")
            if node["missing"]:
                raise UserError(f"--executor ray: the worker on {node['host']} cannot see {node['missing'][0]}; "
                                "put the data (--data-root, or the store's embedded data) on a filesystem every node "
                                "mounts at the same path")

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[Any]:
        if not tasks:
            return
        ray = _ray()
        remote = ray.remote(num_cpus=1, num_gpus=1 if self.device == "cuda" else 0,
                            max_retries=RAY_RETRIES)(_in_ray_worker)
        pending = [remote.remote(fn, task) for task in tasks]
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                try:
                    yield ray.get(done[0])
                except ray.exceptions.RayTaskError as e:
                    raise e.as_instanceof_cause() from None   # the task's own exception (a UserError stays one)
        finally:
            for ref in pending:   # an error or an abandoned map: stop the rest (their claims become stale)
                ray.cancel(ref, force=True)

    def close(self) -> None:
        """Stop the local Ray instance this executor started (a joined cluster keeps running)."""
        if self._started:
            _ray().shutdown()
            self._started = False


def _reachable(address: str, seconds: float = 5.0) -> None:
    """A quick TCP connect to the head's HOST:PORT (Ray itself retries an unreachable GCS for minutes)."""
    import socket
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--ray-address {address}: expected 'auto' or HOST:PORT of a Ray head (e.g. 10.0.0.1:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except OSError as e:
        raise UserError(f"--ray-address {address}: nothing answers there ({e.strerror or e}); start the head with "
                        f"`ray start --head --port {port}` on {host}, or leave --ray-address out to start a local "
                        "instance") from None


def executor_for(name: str, workers: int = 1, device: str = "cpu", address: str | None = None) -> Executor:
    """The named executor (`address` is Ray's); UserError for an unknown name."""
    if name not in EXECUTORS:
        raise UserError(f"--executor {name!r}: expected one of {', '.join(EXECUTORS)}")
    if name == "local":
        return LocalExecutor(workers)
    return RayExecutor(workers, device, address)
