"""`replicate table3`: make the data, train every missing network in parallel, evaluate, print Table 3.

Each network trains in its own worker process (one thread each: small nets scale better across
processes than across threads). Finished networks are read from the store and never retrained;
a run killed at any moment resumes with the networks that had not finished.
"""
from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from convert.errors import UserError
from convert.protoio import atomic_write
from replicate import paper, tables, zoo
from replicate.config import Scale, code_fingerprint, get_scale
from replicate.experiment_data import ExperimentData, data_for
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


def worker_init() -> None:
    """One thread per worker; die with the parent (so a killed run leaves no orphans writing results)."""
    import cv2
    import torch
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _run(task: Task) -> tuple[str, str, dict]:
    scale = get_scale(task.scale)
    net = zoo.get(task.net_id, task.dataset)
    job = job_for(Store(task.store_root), scale, task.dataset, task.data, net, task.dropout)
    return task.dataset, net.name, train(job, scale, task.dataset, task.data, net, task.dropout, task.device)


def collect(store: Store, scale: Scale, datasets: list[str], data: dict[str, ExperimentData],
            dropout: str, device: str, workers: int, progress: bool = True,
            only: set[str] | None = None) -> tables.Accuracies:
    """Accuracy of every Table 3 network (or of the net ids in `only`): stored results, plus training the missing."""
    results: tables.Accuracies = {d: {} for d in datasets}
    pending = []
    for dataset in datasets:
        for net in (n for n in zoo.nets(dataset) if only is None or n.id in only):
            job = job_for(store, scale, dataset, data[dataset], net, dropout)
            if job.done:
                results[dataset][net.name] = job.result()["accuracy"]
            else:
                pending.append(Task(str(store.root), scale.name, dataset, data[dataset], net.id, dropout, device))
    if pending:
        bar = tqdm(total=len(pending), desc=f"training ({len(pending)} nets, {workers} workers)", unit="net",
                   disable=not progress)
        with mp.get_context("spawn").Pool(workers, initializer=worker_init) as pool:
            for dataset, name, result in pool.imap_unordered(_run, pending):
                results[dataset][name] = result["accuracy"]
                bar.set_postfix_str(f"{name}: {result['accuracy']:.1f}%")
                bar.update()
        bar.close()
    return results


def table3(datasets: list[str], scale_name: str, out: Path, data_root: Path | None = None, device: str = "cpu",
           dropout: str = "caffe", workers: int | None = None, progress: bool = True) -> Path:
    """Run the Table 3 experiment and write table3.{md,csv,json}; return the Markdown path."""
    scale = get_scale(scale_name)
    store = Store(out / "store")
    started = time.time()
    data = {d: data_for(d, scale, store, data_root, progress) for d in datasets}
    data_seconds = time.time() - started
    results = collect(store, scale, datasets, data, dropout, device, workers or os.cpu_count() or 1, progress)
    header = {"datasets": ", ".join(f"{d} ({data[d].source}, reported split: {data[d].eval_split})" for d in datasets),
              "scale": f"{scale.name} (input {scale.input_size} px, net {scale.net}, solver {scale.solver})",
              "test-time dropout": dropout, "code fingerprint": code_fingerprint(),
              "seeds": "per network, paper_tables/zoo.csv", "store": str(store.root),
              "wall time": f"data {data_seconds:.0f} s, total {time.time() - started:.0f} s"}
    target = out / "table3" / scale.name
    md = tables.render_markdown(results, scale.name, scale.proxy, header)
    atomic_write(target / "table3.md", md.encode())
    atomic_write(target / "table3.csv", tables.render_csv(results, scale.proxy).encode())
    atomic_write(target / "table3.json", tables.render_json(results, scale.name, scale.proxy, header).encode())
    return target / "table3.md"


def check_datasets(name: str) -> list[str]:
    """--dataset all|rvl-cdip|ilsvrc as a list; UserError listing the valid names."""
    if name == "all":
        return list(paper.DATASETS)
    if name not in paper.DATASETS:
        raise UserError(f"unknown dataset {name!r}; expected one of all, {', '.join(paper.DATASETS)}")
    return [name]


def check_job_name(name: str, datasets: list[str], scale: str) -> None:
    """A --rebuild name must be a network id of the zoo or a data job; UserError listing them otherwise."""
    valid = [n.id for n in zoo.nets(datasets[0])] + [f"{d}-{scale}" for d in datasets]
    if name not in valid:
        raise UserError(f"--rebuild {name!r}: no such network or data set; valid names: {', '.join(valid)}")
