"""Tables 2 and 4: Table 3 nets finetuned with Eq. 7, measured before and after (Sections 4, 5.4, 6.3, B.4).

    rows = reproduce("table2", store, scale, data, fitter="fast", executor=LocalExecutor(2))

For each family of the table, the net named in its `net` column (the widest range of the family, except
Crop: the paper finetuned Crop 256, "center from 256x256", not the widest Crop 320, and so do we) is
trained if missing (the Table 3 job), finetuned with J = 2 branches, one per transform of the table's rows
1-2 (the paper used 4-6 transforms per net, the authors' generator five narrow ranges such as rotations of
4-6 degrees either way, but the tables list only these two fixed ones, so they are G), and measured as Fig. 7
measures (replicate.measure.study: maps fitted on the fit split, scored on the report split, through the
net's fc8): row 0 is the accuracy on untransformed images (Crop: the centre window), rows 1-2 the
equivariance accuracy under the row's fixed transform (replicate.finetune.views). The finetuned net is
measured through its own weights (phi.Source.weights: branch 0's fc7 in the Table 3 net's measurement net).

Modules: net (the weight-shared Caffe net and the Eq. 7 loss weights), views (table rows -> fixed
transforms), train (the store job and our Caffe solver).
"""
from __future__ import annotations

from dataclasses import dataclass

from tqdm import tqdm

from replicate import paper, pipeline, zoo
from replicate.config import FITTER_SEED, Scale, get_scale
from replicate.executors import Executor, LocalExecutor
from replicate.experiment_data import ExperimentData
from replicate.finetune import train
from replicate.finetune.views import family_rows, row_view
from replicate.measure import study
from replicate.measure.phi import Source, View
from replicate.store import Store

__all__ = ["reproduce", "nets_of", "is_done"]


@dataclass(frozen=True)
class Task:
    """One family of a table: finetune its net (if missing) and measure it before and after."""
    store_root: str
    scale: str
    dataset: str
    data: ExperimentData
    rows: tuple[paper.FinetuneRow, ...]
    fitter: str
    dropout: str
    device: str


def nets_of(table: str) -> dict[str, zoo.Net]:
    """The net finetuned per family of a table (its `net` column), in table order; UserError for other tables."""
    rows = paper.finetune_table(table)
    return {r.family: zoo.get(r.net, r.dataset) for r in rows if r.row == 0}


def reproduce(table: str, store: Store, scale: Scale, data: ExperimentData, *, fitter: str = "fast",
              dropout: str = "caffe", device: str = "cpu", executor: Executor | None = None, progress: bool = True,
              families: list[str] | None = None) -> list[dict]:
    """Every row of paper_tables/<table>.csv (or of `families` only): one dict per row with keys family,
    net (Table 3 name), row, paper_label, original (% reproduced, before finetuning), finetune (% after),
    plus 'finetune_job' (dir name), 'train_job' and 'scores' (the raw metrics before and after)."""
    rows = paper.finetune_table(table)
    nets = nets_of(table)
    dataset = rows[0].dataset
    chosen = [f for f in nets if families is None or f in families]
    executor = executor or LocalExecutor(1)
    pipeline.collect(store, scale, [dataset], {dataset: data}, dropout, device, executor, progress,
                     only={nets[f].id for f in chosen})
    tasks = [Task(str(store.root), scale.name, dataset, data, tuple(family_rows(rows, f)), fitter, dropout, device)
             for f in chosen]
    done: dict[str, list[dict]] = {}
    # Always in worker processes of one thread (as Table 3's training): a net's numbers never depend on
    # `--workers` or the executor, and no two processes ever compute the same store job (each family's are its own).
    with tqdm(total=len(tasks), desc=f"{table}: finetuning and measuring", unit="net", disable=not progress) as bar:
        for family, out in executor.map(_run, tasks):
            done[family] = out
            bar.set_postfix_str(family)
            bar.update()
    return [row for f in chosen for row in done[f]]


def _family(store: Store, scale: Scale, data: ExperimentData, rows: tuple[paper.FinetuneRow, ...], dropout: str,
            device: str = "cpu") -> tuple[zoo.Net, View, list[View], dict[str, Source]]:
    """A family's net, reference view, branch views and its Sources before / after finetuning."""
    dataset = rows[0].dataset
    net = zoo.get(rows[0].net, dataset)
    reference, views = row_view(rows[0], net, scale), [row_view(r, net, scale) for r in rows[1:]]
    job = train.job_for(store, scale, dataset, data, net, reference, views, dropout)
    sources = {"original": Source(store, scale, dataset, data, data, net, dropout, device),
               "finetune": Source(store, scale, dataset, data, data, net, dropout, device, weights=job)}
    return net, reference, views, sources


def is_done(table: str, store: Store, scale: Scale, data: ExperimentData, *, fitter: str = "fast",
            dropout: str = "caffe", families: list[str] | None = None) -> bool:
    """Whether reproduce() with these arguments would only read the store (every job it needs is done)."""
    rows = paper.finetune_table(table)
    for family in (f for f in nets_of(table) if families is None or f in families):
        net, reference, views, sources = _family(store, scale, data, tuple(family_rows(rows, family)), dropout)
        jobs = [sources["finetune"].weights, sources["original"].train_job]
        jobs += [study.setting_job(s, reference, v, fitter, FITTER_SEED) for s in sources.values() for v in views]
        if not all(job.done for job in jobs):
            return False
    return True


def _run(task: Task) -> tuple[str, list[dict]]:
    scale, store = get_scale(task.scale), Store(task.store_root)
    family, dataset = task.rows[0].family, task.dataset
    net, reference, views, sources = _family(store, scale, task.data, task.rows, task.dropout, task.device)
    job = sources["finetune"].weights
    if not job.done:
        train.finetune(job, scale, dataset, task.data, net, reference, views, task.dropout, task.device)
    scores = {name: [study.measure_setting(source, reference, v, task.fitter, FITTER_SEED) for v in views]
              for name, source in sources.items()}
    before = sources["original"]
    out = []
    for row in task.rows:
        # Row 0: the untransformed images (the same for every setting); rows 1-2: their setting's map.
        picked = {name: (s[0]["untransformed"] if row.row == 0 else s[row.row - 1]["equivariance"])
                  for name, s in scores.items()}
        out.append({"family": family, "net": net.name, "row": row.row, "paper_label": row.paper_label,
                    "original": 100.0 * picked["original"]["accuracy"],
                    "finetune": 100.0 * picked["finetune"]["accuracy"],
                    "finetune_job": job.dir.name, "train_job": before.train_job.dir.name,
                    "scores": picked})
    return family, out
