"""Tables 2 and 4: equivariance accuracy before and after finetuning with Eq. 7 (RVL-CDIP / ILSVRC).

Inputs: the Table 3 net named per family in paper_tables/table2.csv / table4.csv. Computation:
replicate.finetune.reproduce (the finetuning store jobs and the fig7 measurement machinery). Outputs:
OUT/<table>/<scale>/<table>.{md,csv,json} in the paper's layout: published original / finetune,
reproduced original / finetune, their differences, and the finetuning gain (finetune - original)
published vs reproduced; at paper scale a verdict per cell against paper_tables/provenance.json's
tolerance. The claims T2-* / T4-* are checked on the reproduced rows. T4-more-mixed-than-T2 compares
the two tables, so `table4` reads the reproduced Table 2 when its jobs are in the store (else the
claim is reported not applicable; run `replicate table2` first).
"""
from __future__ import annotations

import csv
import io
import json

from convert.protoio import atomic_write
from replicate import finetune, paper
from replicate.claims import Evidence, as_dicts
from replicate.experiments import register
from replicate.experiments.base import Context, Experiment
from replicate.experiments.table3 import claim_lines, markdown_table, proxy_note

COLUMNS = ("original", "finetune")


def _net_ids(table: str) -> set[str]:
    return {n.id for n in finetune.nets_of(table).values()}


def _reproduce(ctx: Context, table: str) -> list[dict]:
    dataset = paper.FINETUNE_TABLES[table]
    return finetune.reproduce(table, ctx.store, ctx.scale, ctx.data(dataset), fitter=ctx.options.fitter,
                              dropout=ctx.options.dropout, device=ctx.options.device, executor=ctx.executor(),
                              progress=ctx.options.progress)


def rows_of(table: str, reproduced: list[dict], proxy: bool) -> list[dict]:
    """One dict per published row: published and reproduced original/finetune, diffs, gains (and verdicts)."""
    ours = {(r["family"], r["row"]): r for r in reproduced}
    dataset = paper.FINETUNE_TABLES[table]
    out = []
    for r in paper.finetune_table(table):
        mine = ours.get((r.family, r.row))
        row = {"family": r.family, "net": r.net, "row": r.row, "paper_label": r.paper_label or f"(row {r.row})"}
        for column in COLUMNS:
            published, value = getattr(r, column), None if mine is None else round(mine[column], 2)
            row[f"{column}_published"] = published
            row[f"{column}_reproduced"] = value
            row[f"{column}_diff"] = None if value is None else round(value - published, 2)
            if not proxy:
                row[f"{column}_verdict"] = None if value is None else \
                    "agrees" if abs(value - published) <= paper.tolerance(dataset) else "differs"
        row["gain_published"] = round(r.finetune - r.original, 2)
        row["gain_reproduced"] = None if mine is None else round(mine["finetune"] - mine["original"], 2)
        out.append(row)
    return out


def _experiment(table: str) -> Experiment:
    dataset = paper.FINETUNE_TABLES[table]
    other = next(t for t in paper.FINETUNE_TABLES if t != table)

    def compute(ctx: Context) -> dict[str, list[dict]]:
        result = {table: _reproduce(ctx, table)}
        if table == "table4" and finetune.is_done(other, ctx.store, ctx.scale, ctx.data(paper.FINETUNE_TABLES[other]),
                                                  fitter=ctx.options.fitter, dropout=ctx.options.dropout):
            result[other] = _reproduce(ctx, other)   # every job stored: reads only (for T4-more-mixed-than-T2)
        return result

    def render(ctx: Context, result: dict, checks: list) -> list:
        scale = ctx.scale
        rows = rows_of(table, result[table], scale.proxy)
        target = ctx.options.out / table / scale.name
        title = f"# {table.replace('table', 'Table ')} — equivariance before and after finetuning with Eq. 7 " \
                f"({dataset}, scale: {scale.name})"
        parts = ["published", "reproduced", "diff"] + ([] if scale.proxy else ["verdict"])
        columns = ["family", "row"] + [f"{c} {p}" for c in COLUMNS for p in parts] + ["gain published",
                                                                                     "gain reproduced"]
        keys = [f"{c}_{p}" for c in COLUMNS for p in parts] + ["gain_published", "gain_reproduced"]
        record = ctx.record(table=table, dataset=dataset, rows="row 0: untransformed accuracy; rows 1-2: "
                                                                "equivariance accuracy under the row's transform")
        lines = [title, ""] + (proxy_note(scale.name) if scale.proxy else [])
        lines += [f"- {k}: {v}" for k, v in record["options"].items() if k not in ("extra",)] + [""]
        lines += markdown_table(columns, [[f"{r['family']}: {r['paper_label']}", r["row"], *(r[k] for k in keys)]
                                          for r in rows])
        lines += ["", f"## The paper's statements about {table.replace('table', 'Table ')}", ""] + claim_lines(checks)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        body = {"config": record, "rows": rows, "reproduced": result[table], "claims": as_dicts(checks),
                "seconds": ctx.seconds()}
        written = {target / f"{table}.md": "\n".join(lines) + "\n", target / f"{table}.csv": buffer.getvalue(),
                   target / f"{table}.json": json.dumps(body, indent=1, default=str) + "\n"}
        for path, text in written.items():
            atomic_write(path, text.encode())
        return list(written)

    return Experiment(
        name=table, paper=table.replace("table", "Table "),
        help=f"finetune the widest net of each family with Eq. 7 and measure equivariance before/after ({dataset})",
        claims=(table,), datasets=(dataset,), default_datasets=(dataset,),
        options=("scale", "fitter", "dropout", "out", "data_root", "device", "workers", "executor", "ray_address", "rebuild", "quiet"),
        inputs=lambda ctx: {dataset: _net_ids(table)}, compute=compute,
        evidence=lambda ctx, result: Evidence(finetune=result), render=render,
        report=lambda ctx, result, checks, outputs: outputs[0].read_text())


for _table in paper.FINETUNE_TABLES:
    register(_experiment(_table))
