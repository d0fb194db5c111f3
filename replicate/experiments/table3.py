"""Table 3: accuracy of every zoo network on untransformed test images (centre crops for the Crop nets).

Inputs: all 36 nets of each dataset (trained by the driver when missing). Outputs:
OUT/table3/<scale>/table3.{md,csv,json}: published beside reproduced with `*_diff` columns (and a
verdict per cell against paper_tables/provenance.json's tolerance at paper scale); at mini/smoke scale
the numbers are a proxy, so the table reports the rank correlation with each published column and the
paper's claims about Table 3 evaluated on the reproduced numbers.
"""
from __future__ import annotations

import csv
import io
import json
import math

from scipy import stats

from convert.protoio import atomic_write
from replicate import paper, zoo
from replicate.claims import Evidence, as_dicts
from replicate.experiments import register
from replicate.experiments.base import TRAINABLE, Context, Experiment

Accuracies = dict[str, dict[str, float]]


def rank_correlation(results: Accuracies, dataset: str) -> float:
    """Spearman correlation between published and reproduced accuracy over the nets of one dataset."""
    rows = [r for r in paper.table3() if r.net in results.get(dataset, {})]
    if len(rows) < 3:
        return float("nan")
    return float(stats.spearmanr([r.accuracy[dataset] for r in rows],
                                 [results[dataset][r.net] for r in rows]).statistic)


def table3_rows(results: Accuracies, proxy: bool) -> list[dict]:
    """One dict per Table 3 row: published, reproduced, diff (and verdict at paper scale) per dataset."""
    rows = []
    for r in paper.table3():
        row = {"net": r.net, "family": r.family}
        for d in paper.DATASETS:
            col = paper.column(d)
            ours = results.get(d, {}).get(r.net)
            row[f"{col}_published"] = r.accuracy[d]
            row[f"{col}_reproduced"] = None if ours is None else round(ours, 2)
            row[f"{col}_diff"] = None if ours is None else round(ours - r.accuracy[d], 2)
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


def render_markdown(results: Accuracies, scale: str, proxy: bool, header: dict, checks: list) -> str:
    """Table 3 as Markdown: a header (configuration, proxy note), the table, correlations, claims."""
    datasets = [d for d in paper.DATASETS if d in results]
    lines = [f"# Table 3 — accuracy on untransformed test images (scale: {scale})", ""]
    lines += (proxy_note(scale) if proxy else []) + [f"- {k}: {v}" for k, v in header.items()] + [""]
    columns, keys = ["CNN"], []
    for d in datasets:
        parts = ["published", "reproduced", "diff"] + ([] if proxy else ["verdict"])
        columns += [f"{d} {p}" for p in parts]
        keys += [f"{paper.column(d)}_{p}" for p in parts]
    lines += markdown_table(columns, [[row["net"], *(row[k] for k in keys)] for row in table3_rows(results, proxy)])
    lines.append("")
    for d in datasets:
        lines.append(f"Rank correlation (Spearman) published vs reproduced, {d}: {rank_correlation(results, d):+.2f}")
    lines += ["", "## The paper's statements about Table 3", ""] + claim_lines(checks)
    return "\n".join(lines) + "\n"


def render_csv(results: Accuracies, proxy: bool) -> str:
    """Table 3 as CSV with *_published, *_reproduced, *_diff (and *_verdict) columns."""
    rows = table3_rows(results, proxy)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def inputs(ctx: Context) -> dict[str, set[str]]:
    return {d: {n.id for n in zoo.nets(d)} for d in ctx.options.datasets}


def compute(ctx: Context) -> Accuracies:
    """Accuracy (%) of every net from its stored result."""
    return {d: {n.name: ctx.train_job(d, n).result()["accuracy"] for n in zoo.nets(d)} for d in ctx.options.datasets}


def evidence(ctx: Context, results: Accuracies) -> Evidence:
    return Evidence(accuracies=results)


def render(ctx: Context, results: Accuracies, checks: list) -> list:
    scale = ctx.scale
    header = {"datasets": ", ".join(f"{d} ({ctx.data(d).source}, reported split: {ctx.data(d).eval_split})"
                                    for d in results),
              "scale": f"{scale.name} (input {scale.input_size} px, net {scale.net}, solver {scale.solver})",
              "test-time dropout": ctx.options.dropout, "code fingerprint": ctx.record()["code_fingerprint"],
              "seeds": "per network, paper_tables/zoo.csv", "store": str(ctx.store.root),
              "wall time": f"{ctx.seconds():.0f} s"}
    target = ctx.options.out / "table3" / scale.name
    body = {"scale": scale.name, "proxy": scale.proxy, "config": header, "options": ctx.options.record(),
            "rows": table3_rows(results, scale.proxy),
            "rank_correlation": {d: rank_correlation(results, d) for d in results}, "claims": as_dicts(checks)}
    written = {target / "table3.md": render_markdown(results, scale.name, scale.proxy, header, checks),
               target / "table3.csv": render_csv(results, scale.proxy),
               target / "table3.json": json.dumps(body, indent=1) + "\n"}
    for path, text in written.items():
        atomic_write(path, text.encode())
    return list(written)


def report(ctx: Context, results: Accuracies, checks: list, outputs: list) -> str:
    return outputs[0].read_text()


register(Experiment(
    name="table3", paper="Table 3", help="train the networks of Table 3 and print it beside the published numbers",
    claims=("table3",), datasets=TRAINABLE, default_datasets=TRAINABLE,
    options=("dataset", "scale", "data_root", "device", "dropout", "workers", "executor", "ray_address", "out", "rebuild", "quiet"),
    inputs=inputs, compute=compute, evidence=evidence, render=render, report=report))
