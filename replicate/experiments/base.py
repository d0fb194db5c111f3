"""What an experiment is, and the one driver every experiment command runs through.

An Experiment (one paper artefact: a table or a figure) declares, in its own module:
    inputs    the zoo networks it needs per dataset (the driver trains the missing ones through the
              Table 3 store first, in one place for every experiment)
    compute   its numbers from the store (store jobs of its own: measurements, maps, finetuned nets)
    evidence  what its claims are checked on (replicate.claims.Evidence), from its numbers and options
    render    its outputs (tables, figures, CSV, JSON sidecar with the resolved options and claims)
The driver resolves the shared options (replicate/options.py), builds the Context, and runs
inputs -> training -> compute -> claims -> render. The CLI subcommands are generated from the registry.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from convert.errors import UserError
from convert.protoio import atomic_write
from replicate import claims as claim_engine
from replicate import options as opts
from replicate import paper, pipeline, zoo
from replicate.config import DEFAULT_SEEDS, Scale, code_fingerprint, get_scale
from replicate.executors import Executor, executor_for
from replicate.experiment_data import ExperimentData, data_for
from replicate.measure.phi import Source
from replicate.store import Store
from replicate.training import job_for

TRAINABLE = paper.DATASETS   # the datasets the zoo trains on (ANDOC is only measured on)


@dataclass
class Context:
    """One run of an experiment: its resolved options, scale, store and data (loaded once per dataset)."""
    experiment: "Experiment"
    options: opts.RunOptions
    started: float = field(default_factory=time.time)
    _data: dict = field(default_factory=dict)
    _executor: Executor | None = None
    _checked: set = field(default_factory=set)   # data roots the executor's workers were checked to see

    @property
    def scale(self) -> Scale:
        return get_scale(self.options.scale)

    @property
    def store(self) -> Store:
        return Store(self.options.out / "store")

    def data(self, dataset: str) -> ExperimentData:
        """A dataset's data at this scale (embedded: generated into the store once; or --data-root)."""
        if dataset not in self._data:
            self._data[dataset] = data_for(dataset, self.scale, self.store, self.options.data_root,
                                           self.options.progress)
        return self._data[dataset]

    def train_job(self, dataset: str, net: zoo.Net, replica: int = 0):
        return job_for(self.store, self.scale, dataset, self.data(dataset), zoo.replica(net, replica),
                       self.options.dropout)

    @property
    def seeds(self) -> int:
        """Seed replicas per net (table3 --seeds; 1 for experiments without it)."""
        return int(self.options.extra.get("seeds", DEFAULT_SEEDS))

    def source(self, dataset: str, net: zoo.Net, measured_on: str | None = None) -> Source:
        """What a net's phi is computed from: the trained net and the data it is measured on."""
        return Source(self.store, self.scale, dataset, self.data(dataset), self.data(measured_on or dataset), net,
                      self.options.dropout, self.options.device)

    def executor(self) -> Executor:
        """The run's executor (replicate.executors), made on first use and checked for every data set loaded since."""
        fresh = self._executor is None
        if fresh:
            options = self.options
            self._executor = executor_for(options.executor, options.workers, options.device, options.ray_address)
        unchecked = [data.root for data in self._data.values() if data.root not in self._checked]
        if fresh or unchecked:
            self._executor.check(self.store.root, unchecked)   # the store, the code and these data
            self._checked.update(unchecked)
        return self._executor

    def close(self) -> None:
        """Release what the run holds (a local Ray instance it started)."""
        if self._executor is not None:
            self._executor.close()
            self._executor = None
            self._checked.clear()

    def record(self, **extra: Any) -> dict[str, Any]:
        """The configuration every output of this run records."""
        return {"experiment": self.experiment.name, "paper": self.experiment.paper, "options": self.options.record(),
                "input_size": self.scale.input_size, "proxy": self.scale.proxy,
                "data": {d: data.source for d, data in self._data.items()},
                "code_fingerprint": code_fingerprint(), "store": str(self.store.root), **extra}

    def seconds(self) -> float:
        return round(time.time() - self.started, 1)


Inputs = dict[str, set[str]]   # dataset -> zoo net ids


@dataclass(frozen=True)
class Experiment:
    """A paper artefact as a command (see the module docstring)."""
    name: str                                  # the subcommand, e.g. "fig7"
    paper: str                                 # what it reproduces, e.g. "Fig. 7"
    help: str
    claims: tuple[str, ...]                    # the claims it checks: table names or figure numbers
    datasets: tuple[str, ...]                  # datasets it runs on
    default_datasets: tuple[str, ...]
    options: tuple[str, ...]                   # shared options (replicate/options.py)
    inputs: Callable[[Context], Inputs]
    compute: Callable[[Context], Any]
    evidence: Callable[[Context, Any], claim_engine.Evidence]
    render: Callable[[Context, Any, list], list[Path]]   # writes outputs; returns their paths
    report: Callable[[Context, Any, list, list[Path]], str] | None = None   # printed (default: the claims)
    families: tuple[str, ...] = ()             # --families choices, when it takes them
    default_families: tuple[str, ...] = ()     # ... and its default (empty: all of them)
    arguments: Callable[[argparse.ArgumentParser], None] | None = None   # its own options
    defaults: dict = field(default_factory=dict)   # shared options whose default differs here (say why)
    extra: Callable[[argparse.Namespace], dict] | None = None            # their values, checked


def train_missing(ctx: Context, needed: Inputs) -> None:
    """Train the needed zoo nets that the store lacks; UserError naming any that failed and why."""
    for dataset, ids in needed.items():
        if not ids:
            continue
        error = None
        try:
            pipeline.collect(ctx.store, ctx.scale, [dataset], {dataset: ctx.data(dataset)}, ctx.options.dropout,
                             ctx.options.device, ctx.executor(), ctx.options.progress, only=ids,
                             replicas=ctx.seeds)
        except UserError:
            raise
        except Exception as e:   # a worker's failure: name the nets left unfinished and the reason
            error = f"{type(e).__name__}: {e}"
        jobs = {i if k == 0 else f"{i} (seed replica {k})": ctx.train_job(dataset, zoo.get(i, dataset), k)
                for i in sorted(ids) for k in range(ctx.seeds)}
        failed = [i for i, job in jobs.items() if not job.done]
        if failed or error:
            states = ", ".join(f"{i} ({jobs[i].state})" for i in failed)
            raise UserError(f"{ctx.experiment.name}: training failed for {dataset} network(s) {states or sorted(ids)}: "
                            f"{error or 'no result recorded (or numeric code changed while training: it is part of every key)'}"
                            f"; rerun to resume, or `--rebuild ID`")


def rebuild(ctx: Context) -> None:
    """--rebuild NAME: remove the stored jobs of that name at this scale so they are recomputed.

    NAME is a net id (its training job, every seed replica of it (--seeds) and every measurement named
    after it: they share the name and differ in the seed their key holds), a data set
    (`<dataset>-<scale>`) or any stored job's name an error message gave (e.g. a distance pair).
    """
    if not ctx.options.rebuild:
        return
    suffixes = tuple(f"-{ctx.scale.name}-{d}" for d in ctx.options.datasets)
    kinds = ["data"] + sorted(p.name for p in ctx.store.root.glob("*") if p.is_dir() and p.name.endswith(suffixes))
    nets = [n.id for n in zoo.nets(ctx.options.datasets[0])] if ctx.options.datasets[0] in TRAINABLE else []
    valid = [*nets, *(f"{d}-{ctx.scale.name}" for d in ctx.options.datasets)]
    for name in ctx.options.rebuild:
        if name not in valid and not any(any(ctx.store.entries(kind, name)) for kind in kinds):
            raise UserError(f"--rebuild {name!r}: no such network or data set; valid names: {', '.join(valid)} "
                            f"(or a stored job's name, as an error message gives it)")
        print(f"rebuild {name}: removed {ctx.store.rebuild(name, kinds)} stored job(s)")


def run(experiment: Experiment, options: opts.RunOptions) -> tuple[Any, list, list[Path], Context]:
    """Run an experiment end to end; return (numbers, claim results, output paths, context)."""
    ctx = Context(experiment, options)
    try:
        rebuild(ctx)
        train_missing(ctx, experiment.inputs(ctx))
        result = experiment.compute(ctx)
        checks = claim_engine.evaluate_all(experiment.claims, experiment.evidence(ctx, result))
        outputs = experiment.render(ctx, result, checks)
    finally:
        ctx.close()
    return result, checks, outputs, ctx


def write_sidecar(path: Path, ctx: Context, checks: list, **extra: Any) -> Path:
    """The JSON next to an output: resolved configuration, claim checks, wall time (atomic)."""
    body = {"config": ctx.record(**extra), "claims": claim_engine.as_dicts(checks), "seconds": ctx.seconds()}
    atomic_write(path, (json.dumps(body, indent=1, default=str) + "\n").encode())
    return path
