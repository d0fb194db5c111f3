"""One finetuned net of Table 2 / 4: a store job trained with our Caffe solver from the Table 3 net's weights.

The job (kind `finetune-<scale>-<dataset>`, name the zoo id) is keyed by the Table 3 train job, the resolved
finetuning prototxt and solver text, the branch views (the fixed transforms), the lambdas, seed, dropout
convention and the fingerprint of the code that changes its numbers. Its directory holds, like a Table 3
job: train_val.prototxt (the finetuning net), solver.prototxt, net.caffemodel (every branch; branch 0 has
the Table 3 layer names, so the Table 3 train_val reads it), net.log and result.json (last, atomic).

Training starts from the Table 3 net's net.caffemodel (the maps M_g from W = 0, their fillers). Branch j's
Data layer gets its fixed transform in the `augment` hook (Crop: a fixed window, branch 0 the centre), as
the authors applied transforms inside their fork's DataTransformer; branch 0 reads the untransformed
images (x of Eq. 6; the authors' branch 0 has no transform), so the Table 3 net's own training
augmentation is not applied while finetuning. Resuming: the solver snapshots every
`FinetuneSchedule.snapshot` iterations into the job directory (older snapshots are deleted once a newer
one is complete); a rerun of a killed job continues from the newest complete snapshot (its .json sidecar,
written last, restores data cursors and RNGs), so the result equals an uninterrupted run's.
"""
from __future__ import annotations

import re
import time
from dataclasses import asdict
from pathlib import Path

from google.protobuf import text_format

from convert import caffe_pb2 as pb
from convert.errors import UserError
from convert.protoio import write_text_proto
from replicate import zoo
from replicate.config import FINETUNE_CODE, FINETUNE_LAMBDAS, Scale, code_fingerprint, finetune_schedule
from replicate.experiment_data import ExperimentData
from replicate.finetune.net import Lambdas, branch_layer, finetune_net, split_net
from replicate.measure.phi import View, apply_view
from replicate.store import Job, Store
from replicate.training import job_for as train_job_for, resolved_net

SNAPSHOT = re.compile(r"net_iter_(\d+)\.solverstate\.json$")


def lambdas_for(trained: pb.NetParameter) -> Lambdas:
    """The paper's lambdas for this net's fc7 width (replicate.finetune.net: 50 and 25 per dimension)."""
    return Lambdas.per_dimension(split_net(trained)[3], **FINETUNE_LAMBDAS)


def finetune_prototxt(scale: Scale, dataset: str, data: ExperimentData, net: zoo.Net,
                      branches: int) -> pb.NetParameter:
    """The finetuning net of a Table 3 net: its resolved train_val, the schedule's batch, J branches."""
    trained = resolved_net(scale, dataset, data, net)
    for layer in trained.layer:
        if layer.type == "Data" and any(r.phase == pb.TRAIN for r in layer.include):
            layer.data_param.batch_size = finetune_schedule(scale.name, dataset).batch
    return finetune_net(trained, branches, lambdas_for(trained))


def solver_param(scale: Scale, dataset: str, seed: int) -> pb.SolverParameter:
    """Section 5.4's solver at this scale (paths are added per job): SGD, step policy, no weight decay."""
    s = finetune_schedule(scale.name, dataset)
    return pb.SolverParameter(base_lr=s.base_lr, lr_policy="step", gamma=s.gamma, stepsize=s.stepsize,
                              max_iter=s.max_iter, momentum=s.momentum, weight_decay=s.weight_decay,
                              display=max(1, s.max_iter // 20), snapshot=0, snapshot_after_train=False,
                              random_seed=seed, type="SGD")


def job_for(store: Store, scale: Scale, dataset: str, data: ExperimentData, net: zoo.Net, reference: View,
            branches: list[View], dropout: str) -> Job:
    """The store entry of one finetuned net (branch 0 sees `reference`, branch j sees branches[j-1])."""
    train_job = train_job_for(store, scale, dataset, data, net, dropout)
    prototxt = finetune_prototxt(scale, dataset, data, net, len(branches))
    config = {"dataset": dataset, "scale": scale.name, "net": net.id, "train_job": train_job.dir.name,
              "net_prototxt": text_format.MessageToString(prototxt),
              "solver_prototxt": text_format.MessageToString(solver_param(scale, dataset, net.seed)),
              "reference": asdict(reference), "branches": [asdict(v) for v in branches],
              "lambdas": asdict(lambdas_for(resolved_net(scale, dataset, data, net))), "seed": net.seed,
              "dropout": dropout, "code": code_fingerprint(FINETUNE_CODE)}
    return store.job(f"finetune-{scale.name}-{dataset}", net.id, config)


def _snapshots(job_dir: Path) -> list[tuple[int, Path]]:
    """Complete snapshots (their sidecar, written last, exists), oldest first."""
    found = [(int(m.group(1)), p) for p in job_dir.glob("net_iter_*.solverstate.json")
             if (m := SNAPSHOT.search(p.name))]
    return sorted(found)


def _prune(job_dir: Path, keep: int | None) -> None:
    """Delete every snapshot but iteration `keep` (None: all of them)."""
    for path in job_dir.glob("net_iter_*"):
        m = re.match(r"net_iter_(\d+)\.", path.name)
        if m and int(m.group(1)) != keep:
            path.unlink(missing_ok=True)


def train_losses(log: Path) -> dict[int, float]:
    """Eq. 7 per iteration from the solver log (a resumed run's repeated iterations: the last, same, value)."""
    losses = {}
    for line in log.read_text().splitlines():
        m = re.match(r"phase=train iter=(\d+) loss=\S+ raw_loss=(\S+) lr=", line)
        if m:
            losses[int(m.group(1))] = float(m.group(2))
    return losses


def finetune(job: Job, scale: Scale, dataset: str, data: ExperimentData, net: zoo.Net, reference: View,
             branches: list[View], dropout: str, device: str = "cpu") -> dict:
    """Finetune one net with Eq. 7 (continuing a killed run) and record the result in the store."""
    from replicate.solver import Solver
    schedule = finetune_schedule(scale.name, dataset)
    trained = train_job_for(job.store, scale, dataset, data, net, dropout)
    if not trained.done:
        raise UserError(f"finetune {net.id}: its Table 3 net is not trained ({trained.dir}, {trained.state}); "
                        "train it first (replicate.pipeline.collect)")
    weights = trained.dir / "net.caffemodel"
    job_dir = job.begin(resumable=lambda d: bool(_snapshots(d)))   # waits while another run finetunes this net
    resume = _snapshots(job_dir)   # what a killed run left, kept by begin(); empty for a fresh start
    if job.done:   # it finished while we waited: use its result
        job.release()
        return job.result()
    net_param = finetune_prototxt(scale, dataset, data, net, len(branches))
    solver_p = solver_param(scale, dataset, net.seed)
    solver_p.net = str(job_dir / "train_val.prototxt")
    solver_p.snapshot_prefix = str(job_dir / "net")
    if not resume:
        write_text_proto(job_dir / "train_val.prototxt", net_param)
        write_text_proto(job_dir / "solver.prototxt", solver_p)
    # The seed also seeds the global torch RNG (Dropout's masks): a rerun of the job gives the same net.
    solver = Solver(solver_p, root=job_dir, net_param=net_param, seed=net.seed, dropout=dropout, device=device,
                    weights=None if resume else str(weights), progress=False)
    for branch, view in enumerate([reference, *branches]):
        apply_view(solver.net.layer(branch_layer("data", branch)), view)
    if resume:
        solver.restore(resume[-1][1].with_suffix(""))
    resumed_from = solver.iter
    started = time.time()
    while solver.iter < schedule.max_iter:
        solver.step(min(schedule.snapshot - solver.iter % schedule.snapshot, schedule.max_iter - solver.iter))
        if solver.iter < schedule.max_iter:
            solver.snapshot()
            _prune(job_dir, solver.iter)
    seconds = time.time() - started
    solver.net.save_caffemodel(job_dir / "net.caffemodel")
    _prune(job_dir, None)
    losses = train_losses(solver.log_path)
    tail = [losses[i] for i in range(max(0, schedule.max_iter - max(1, schedule.max_iter // 10)), schedule.max_iter)]
    return job.finish({"iterations": schedule.max_iter, "batch": schedule.batch, "branches": len(branches),
                       "resumed_from": resumed_from, "train_seconds": round(seconds, 1),
                       "loss_first": losses[0], "loss_last": losses[schedule.max_iter - 1],
                       "loss_last_tenth": sum(tail) / len(tail),
                       "images_per_second": round((schedule.max_iter - resumed_from) * schedule.batch
                                                  * (len(branches) + 1) / max(seconds, 1e-9), 1),
                       "init_weights": str(weights), "weights": "net.caffemodel"})
