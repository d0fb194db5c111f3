"""Training the zoo networks every experiment needs: one executor task per missing network.

Each network trains in its own worker process of one thread (small nets scale better across processes
than across threads), in the local pool or on Ray (replicate.executors). Finished networks are read
from the store and never retrained; a run killed at any moment resumes with the networks that had not
finished.
"""
from __future__ import annotations

import ctypes
import signal
import sys
from dataclasses import dataclass

from tqdm import tqdm

from replicate import zoo
from replicate.config import Scale, get_scale
from replicate.executors import Executor
from replicate.experiment_data import ExperimentData
from replicate.store import Store
from replicate.training import job_for, train


@dataclass(frozen=True)
class Task:
    """One network to train, in a form a worker process can receive."""
    store_root: str
    scale: str
    dataset: str
    data: ExperimentData
    net_id: str
    dropout: str
    device: str
    replica: int = 0   # zoo.replica(net, replica): the seed replica (table3 --seeds)


def worker_init() -> None:
    """One thread per worker; die with the parent (so a killed run leaves no orphans writing results)."""
    import cv2
    import torch
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _run(task: Task) -> tuple[str, str, int, dict]:
    scale = get_scale(task.scale)
    net = zoo.replica(zoo.get(task.net_id, task.dataset), task.replica)
    job = job_for(Store(task.store_root), scale, task.dataset, task.data, net, task.dropout)
    return task.dataset, net.name, task.replica, train(job, scale, task.dataset, task.data, net, task.dropout,
                                                       task.device)


def requested(dataset: str, only: set[str] | None) -> list[zoo.Net]:
    """The zoo's nets of a dataset, or those with the ids in `only` (zoo.get's ids, e.g. `<id>-code`), in zoo order."""
    if only is None:
        return zoo.nets(dataset)
    order = {n.name: i for i, n in enumerate(zoo.nets(dataset))}
    return sorted((zoo.get(i, dataset) for i in only), key=lambda n: (order[n.name], n.id))   # unknown: UserError


def collect(store: Store, scale: Scale, datasets: list[str], data: dict[str, ExperimentData],
            dropout: str, device: str, executor: Executor, progress: bool = True,
            only: set[str] | None = None, replicas: int = 1) -> dict[str, dict[str, float]]:
    """Accuracy of every Table 3 network (or of the net ids in `only`): stored results, plus training the missing.

    replicas > 1 also trains seed replicas 1..replicas-1 of each (zoo.replica); the returned accuracies are
    replica 0's (the experiments read every replica from the store).
    """
    results: dict[str, dict[str, float]] = {d: {} for d in datasets}
    pending = []
    for dataset in datasets:
        for net in requested(dataset, only):
            for k in range(replicas):
                job = job_for(store, scale, dataset, data[dataset], zoo.replica(net, k), dropout)
                if not job.done:
                    pending.append(Task(str(store.root), scale.name, dataset, data[dataset], net.id, dropout,
                                        device, k))
                elif k == 0:
                    results[dataset][net.name] = job.result()["accuracy"]
    if pending:
        bar = tqdm(total=len(pending), desc=f"training ({len(pending)} nets, {executor.name})", unit="net",
                   disable=not progress)
        for dataset, name, k, result in executor.map(_run, pending):
            if k == 0:
                results[dataset][name] = result["accuracy"]
            bar.set_postfix_str(f"{name}: {result['accuracy']:.1f}%")
            bar.update()
        bar.close()
    return results
