"""Table 3: accuracy of every zoo network on untransformed test images (centre crops for the Crop nets).

Inputs: all 36 nets of each dataset (trained by the driver when missing). Outputs:
OUT/table3/<scale>/table3.{md,csv,json}: published beside reproduced with `*_diff` columns (and a
verdict per cell against paper_tables/provenance.json's tolerance at paper scale); at mini/smoke scale
the numbers are a proxy, so the table reports the rank correlation with each published column and the
paper's claims about Table 3 evaluated on the reproduced numbers.

--seeds N trains N seed replicas of every net (replicate.zoo.replica; replica 0 is the net of a run
without --seeds). Reproduced cells are then the mean over replicas, printed "mean ± sd" (sample standard
deviation, the `*_spread` column). The seed noise of a dataset is the standard deviation of all its
baseline runs (Baselines 1-3 differ only in their seed, so even N = 1 gives 3 runs); the claims report
whether their margin exceeds it.

--perspective-sigma code trains the Perspective rows with the authors' generator's range, a tenth of the
paper's labels (replicate.zoo.as_trained_by, docs/protocol.md); the rows keep Table 3's names and the
header records the convention. The default follows the paper.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from convert.errors import UserError
from convert.protoio import atomic_write
from replicate import paper, zoo
from replicate.config import DEFAULT_PERSPECTIVE_SIGMA, DEFAULT_SEEDS, REPLICA_SEED_STRIDE
from replicate.claims import Evidence, as_dicts
from replicate.experiments import register
from replicate.experiments.base import TRAINABLE, Context, Experiment

Accuracies = dict[str, dict[str, float]]
PERSPECTIVE_NOTE = {   # the header line of each --perspective-sigma convention
    "paper": "paper (s_max 0.001-0.004 as Table 3 labels the nets; the authors' generator trained a tenth: "
             "--perspective-sigma code)",
    "code": "code (s_max 0.0001-0.0004, the authors' generateExperiement.py; rows keep Table 3's labels)"}


@dataclass(frozen=True)
class Table3Result:
    """Every replica's accuracy, {dataset: {net name: [replica 0, 1, ...]}}, and what is derived from it."""
    replicas: dict[str, dict[str, list[float]]]

    @property
    def mean(self) -> Accuracies:
        return {d: {n: float(np.mean(v)) for n, v in nets.items()} for d, nets in self.replicas.items()}

    @property
    def spread(self) -> Accuracies:
        """Sample standard deviation over replicas (nan with one)."""
        return {d: {n: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan") for n, v in nets.items()}
                for d, nets in self.replicas.items()}

    @property
    def seeds(self) -> int:
        return min((len(v) for nets in self.replicas.values() for v in nets.values()), default=0)

    def noise(self) -> dict[str, float]:
        """Seed noise per dataset: the standard deviation of every baseline run (all differ only in seed)."""
        out = {}
        for d, nets in self.replicas.items():
            runs = [a for net in zoo.nets(d, "baseline") for a in nets.get(net.name, [])]
            out[d] = float(np.std(runs, ddof=1)) if len(runs) > 1 else float("nan")
        return out


def rank_correlation(results: Accuracies, dataset: str) -> float:
    """Spearman correlation between published and reproduced accuracy over the nets of one dataset."""
    rows = [r for r in paper.table3() if r.net in results.get(dataset, {})]
    if len(rows) < 3:
        return float("nan")
    return float(stats.spearmanr([r.accuracy[dataset] for r in rows],
                                 [results[dataset][r.net] for r in rows]).statistic)


def table3_rows(results: Accuracies, proxy: bool, spread: Accuracies | None = None) -> list[dict]:
    """One dict per Table 3 row: published, reproduced, diff, spread over seeds (and verdict at paper scale)."""
    rows = []
    for r in paper.table3():
        row = {"net": r.net, "family": r.family}
        for d in paper.DATASETS:
            col = paper.column(d)
            ours = results.get(d, {}).get(r.net)
            row[f"{col}_published"] = r.accuracy[d]
            row[f"{col}_reproduced"] = None if ours is None else round(ours, 2)
            row[f"{col}_diff"] = None if ours is None else round(ours - r.accuracy[d], 2)
            if spread is not None:
                sd = spread.get(d, {}).get(r.net)
                row[f"{col}_spread"] = None if sd is None or math.isnan(sd) else round(sd, 2)
            if not proxy:
                row[f"{col}_verdict"] = (None if ours is None else
                                         "agrees" if abs(ours - r.accuracy[d]) <= paper.tolerance(d) else "differs")
        rows.append(row)
    return rows


def cell(value) -> str:
    """A table cell: — for missing, two decimals for numbers."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def markdown_table(columns: list[str], rows: list[list]) -> list[str]:
    """A Markdown table's lines."""
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
            *("| " + " | ".join(cell(v) for v in row) + " |" for row in rows)]


def claim_lines(checks: list) -> list[str]:
    """The claim checks as Markdown bullets."""
    return [f"- **{c.verdict}** — “{c.quote}” ({c.id}): {c.numbers if c.numbers is not None else ''}" for c in checks]


def proxy_note(scale: str) -> list[str]:
    return [f"**Proxy:** `{scale}` scale runs on the embedded stand-in datasets with a small net; the "
            "reproduced numbers are not comparable to the published ones. Judge it by the rank correlation "
            "and the paper's claims below, not by the differences.", ""]


def render_markdown(result: Table3Result, scale: str, proxy: bool, header: dict, checks: list) -> str:
    """Table 3 as Markdown: a header (configuration, proxy note), the table, correlations, noise, claims."""
    results, with_spread = result.mean, result.seeds > 1
    datasets = [d for d in paper.DATASETS if d in results]
    lines = [f"# Table 3 — accuracy on untransformed test images (scale: {scale})", ""]
    lines += (proxy_note(scale) if proxy else []) + [f"- {k}: {v}" for k, v in header.items()] + [""]
    columns, keys = ["CNN"], []
    for d in datasets:
        parts = ["published", "reproduced", "diff"] + ([] if proxy else ["verdict"])
        columns += [f"{d} {p}" for p in parts]
        keys += [f"{paper.column(d)}_{p}" for p in parts]
    rows = table3_rows(results, proxy, result.spread if with_spread else None)
    lines += markdown_table(columns, [[row["net"], *(shown(row, k) for k in keys)] for row in rows])
    lines.append("")
    for d in datasets:
        lines.append(f"Rank correlation (Spearman) published vs reproduced, {d}: {rank_correlation(results, d):+.2f}")
    runs = result.seeds * len(zoo.nets(datasets[0], "baseline")) if datasets else 0
    for d, sigma in result.noise().items():
        lines.append(f"Seed noise, {d}: {cell(sigma)} points (standard deviation of the {runs} baseline runs; "
                     "a difference between two nets within about twice this is not evidence)")
    lines += ["", "## The paper's statements about Table 3", ""] + claim_lines(checks)
    return "\n".join(lines) + "\n"


def shown(row: dict, key: str):
    """A reproduced cell with its spread over seeds ("mean ± sd") where the row has one."""
    spread = row.get(key.replace("_reproduced", "_spread")) if key.endswith("_reproduced") else None
    return row[key] if spread is None else f"{row[key]:.2f} ± {spread:.2f}"


def render_csv(result: Table3Result, proxy: bool) -> str:
    """Table 3 as CSV with *_published, *_reproduced (the mean over seeds), *_diff, *_spread (and *_verdict)."""
    rows = table3_rows(result.mean, proxy, result.spread)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def perspective_sigma(ctx: Context) -> str:
    """The run's --perspective-sigma convention (replicate.zoo.SIGMA_CONVENTIONS)."""
    return ctx.options.extra.get("perspective_sigma", DEFAULT_PERSPECTIVE_SIGMA)


def table_nets(ctx: Context, dataset: str) -> list[zoo.Net]:
    """The 36 nets of a dataset's column, perspective ones under --perspective-sigma's convention."""
    return [zoo.as_trained_by(n, perspective_sigma(ctx)) for n in zoo.nets(dataset)]


def inputs(ctx: Context) -> dict[str, set[str]]:
    return {d: {n.id for n in table_nets(ctx, d)} for d in ctx.options.datasets}


def compute(ctx: Context) -> Table3Result:
    """Accuracy (%) of every replica of every net from its stored result."""
    return Table3Result({d: {n.name: [ctx.train_job(d, n, k).result()["accuracy"] for k in range(ctx.seeds)]
                             for n in table_nets(ctx, d)} for d in ctx.options.datasets})


def evidence(ctx: Context, result: Table3Result) -> Evidence:
    return Evidence(accuracies=result.mean, noise=result.noise())


def arguments(parser: argparse.ArgumentParser) -> None:
    """Table 3's own options."""
    parser.add_argument("--seeds", type=int, default=DEFAULT_SEEDS,
                        help=f"seed replicas per net (seed + k*{REPLICA_SEED_STRIDE}); cells print mean ± sd "
                             f"(default {DEFAULT_SEEDS}: make table3's 20-minute budget)")
    parser.add_argument("--perspective-sigma", choices=zoo.SIGMA_CONVENTIONS, default=DEFAULT_PERSPECTIVE_SIGMA,
                        help="the Perspective rows' training range: paper (Table 3's s_max 0.001-0.004) or code "
                             "(the authors' generator: a tenth of it) (default: %(default)s)")


def extra(args: argparse.Namespace) -> dict:
    if args.seeds < 1:
        raise UserError(f"--seeds {args.seeds}: expected a number of replicas per net >= 1")
    return {"seeds": args.seeds, "perspective_sigma": args.perspective_sigma}


def render(ctx: Context, result: Table3Result, checks: list) -> list:
    scale = ctx.scale
    header = {"datasets": ", ".join(f"{d} ({ctx.data(d).source}, reported split: {ctx.data(d).eval_split})"
                                    for d in result.replicas),
              "scale": f"{scale.name} (input {scale.input_size} px, net {scale.net}, solver {scale.solver})",
              "test-time dropout": ctx.options.dropout, "code fingerprint": ctx.record()["code_fingerprint"],
              "seeds": (f"{ctx.seeds} per network: zoo.csv's seed + k * {REPLICA_SEED_STRIDE}, k < {ctx.seeds}"
                        if ctx.seeds > 1 else "one per network, paper_tables/zoo.csv"),
              "perspective sigma": PERSPECTIVE_NOTE[perspective_sigma(ctx)],
              "store": str(ctx.store.root),
              "wall time": f"{ctx.seconds():.0f} s"}
    target = ctx.options.out / "table3" / scale.name
    body = {"scale": scale.name, "proxy": scale.proxy, "config": header, "options": ctx.options.record(),
            "rows": table3_rows(result.mean, scale.proxy, result.spread), "replicas": result.replicas,
            "seed_noise": result.noise(),
            "rank_correlation": {d: rank_correlation(result.mean, d) for d in result.mean}, "claims": as_dicts(checks)}
    written = {target / "table3.md": render_markdown(result, scale.name, scale.proxy, header, checks),
               target / "table3.csv": render_csv(result, scale.proxy),
               target / "table3.json": json.dumps(body, indent=1) + "\n"}
    for path, text in written.items():
        atomic_write(path, text.encode())
    return list(written)


def report(ctx: Context, result: Table3Result, checks: list, outputs: list) -> str:
    return outputs[0].read_text()


register(Experiment(
    name="table3", paper="Table 3", help="train the networks of Table 3 and print it beside the published numbers",
    claims=("table3",), datasets=TRAINABLE, default_datasets=TRAINABLE,
    options=("dataset", "scale", "data_root", "device", "dropout", "workers", "executor", "ray_address", "out", "rebuild", "quiet"),
    inputs=inputs, compute=compute, evidence=evidence, render=render, report=report, arguments=arguments,
    extra=extra))
