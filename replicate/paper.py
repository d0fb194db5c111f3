"""The published numbers of Tables 2, 3 and 4, their provenance and the paper's claims, loaded from paper_tables/.

API:
    table3() -> tuple[Table3Row]                  one row per network, accuracy per dataset ("rvl-cdip", "ilsvrc")
    finetune_table("table2"|"table4") -> tuple[FinetuneRow]   before/after finetuning with Eq. 7
    claims(table=None) -> list[Claim]            machine-checkable statements (paper_tables/claims.json)
    claim_kinds() -> dict[str, str]              what each claim 'kind' means
    provenance(table) -> dict                    caption, location, split, unit, column meanings
    tolerance(dataset) -> float                  paper-scale verdict tolerance in accuracy points

The CSVs store the published cells as text (the paper's precision); rows here carry both the text and
the float. Malformed files raise UserError naming file and line.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from convert.errors import UserError

PAPER_TABLES = Path(__file__).resolve().parent.parent / "paper_tables"
DATASETS = ("rvl-cdip", "ilsvrc")
FINETUNE_TABLES = {"table2": "rvl-cdip", "table4": "ilsvrc"}


def column(dataset: str) -> str:
    """CSV column key of a dataset ("rvl-cdip" -> "rvl_cdip")."""
    return dataset.replace("-", "_")


def read_csv(path: Path, required: list[str]) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV with their 1-based line numbers; the header must contain `required`."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}:1: missing columns {missing}; expected {required}")
        return [(reader.line_num, row) for row in reader]


def parse_number(text: str, where: str) -> float:
    """A published cell as a float (UserError naming `where` if it is not a number)."""
    try:
        return float(text)
    except ValueError:
        raise UserError(f"{where}: {text!r} is not a number") from None


def parse_params(text: str, where: str) -> dict[str, int | float | str]:
    """'k=v;k=v' -> {k: v}: integers as int, other numbers as float, words (e.g. position=center) as str."""
    params: dict[str, int | float | str] = {}
    for item in filter(None, text.split(";")):
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise UserError(f"{where}: parameter {item!r} is not key=value")
        for kind in (int, float, str):
            try:
                params[key] = kind(value)
                break
            except ValueError:
                continue
    return params


@dataclass(frozen=True)
class Table3Row:
    """One network of Table 3: published accuracy (%) per dataset, as text and as number."""
    net: str
    family: str
    paper_label: str
    text: dict[str, str]
    accuracy: dict[str, float]
    bold: dict[str, bool]


@dataclass(frozen=True)
class FinetuneRow:
    """One row of Table 2 or 4: a fixed transform measured on a net before and after finetuning."""
    dataset: str
    family: str
    net: str
    row: int  # 0 = untransformed images
    paper_label: str
    measure: str
    measure_params: dict[str, int | float | str]
    original_text: str
    finetune_text: str
    original: float
    finetune: float


@dataclass(frozen=True)
class Claim:
    """A statement of the paper with a structured check (see claim_kinds())."""
    id: str
    location: str
    quote: str
    check: dict[str, Any]
    published: str
    table: str | None
    figure: str | None


@lru_cache(maxsize=None)
def table3() -> tuple[Table3Row, ...]:
    """Table 3, in the order of paper_tables/table3.csv."""
    path = PAPER_TABLES / "table3.csv"
    cols = [column(d) for d in DATASETS]
    rows = []
    for line, r in read_csv(path, ["net", "family", "paper_label", *cols, *(c + "_bold" for c in cols)]):
        where = f"{path}:{line}"
        if any(r[f"{c}_bold"] not in ("0", "1") for c in cols):
            raise UserError(f"{where}: bold flags must be 0 or 1")
        rows.append(Table3Row(
            net=r["net"], family=r["family"], paper_label=r["paper_label"],
            text={d: r[column(d)] for d in DATASETS},
            accuracy={d: parse_number(r[column(d)], where) for d in DATASETS},
            bold={d: r[column(d) + "_bold"] == "1" for d in DATASETS}))
    return tuple(rows)


@lru_cache(maxsize=None)
def finetune_table(name: str) -> tuple[FinetuneRow, ...]:
    """Table 2 (RVL-CDIP) or Table 4 (ILSVRC)."""
    if name not in FINETUNE_TABLES:
        raise UserError(f"unknown finetune table {name!r}; expected one of {sorted(FINETUNE_TABLES)}")
    dataset = FINETUNE_TABLES[name]
    path = PAPER_TABLES / f"{name}.csv"
    original, finetune = f"{column(dataset)}_original", f"{column(dataset)}_finetune"
    rows = []
    for line, r in read_csv(path, ["family", "net", "row", "paper_label", "measure", "measure_params",
                                   original, finetune]):
        where = f"{path}:{line}"
        rows.append(FinetuneRow(
            dataset=dataset, family=r["family"], net=r["net"], row=int(parse_number(r["row"], where)),
            paper_label=r["paper_label"], measure=r["measure"],
            measure_params=parse_params(r["measure_params"], where),
            original_text=r[original], finetune_text=r[finetune],
            original=parse_number(r[original], where), finetune=parse_number(r[finetune], where)))
    return tuple(rows)


@lru_cache(maxsize=None)
def _json(name: str) -> dict[str, Any]:
    path = PAPER_TABLES / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None


def claims(table: str | None = None) -> list[Claim]:
    """The paper's claims, all or those about one table ("table2", "table3", "table4")."""
    data = _json("claims.json")
    kinds = data["kinds"]
    out = []
    for c in data["claims"]:
        if c["check"].get("kind") not in kinds:
            raise UserError(f"{PAPER_TABLES / 'claims.json'}: claim {c.get('id')!r} has unknown check kind "
                            f"{c['check'].get('kind')!r}; expected one of {sorted(kinds)}")
        out.append(Claim(id=c["id"], location=c["location"], quote=c["quote"], check=c["check"],
                         published=c["published"], table=c.get("table"), figure=c.get("figure")))
    return [c for c in out if table is None or c.table == table]


def claim_kinds() -> dict[str, str]:
    """Definition of every claim kind, as a checker must evaluate it."""
    return dict(_json("claims.json")["kinds"])


def provenance(table: str) -> dict[str, Any]:
    """Caption, location, split, unit and column meanings of a table."""
    tables = _json("provenance.json")["tables"]
    if table not in tables:
        raise UserError(f"unknown table {table!r}; expected one of {sorted(tables)}")
    return tables[table]


def tolerance(dataset: str) -> float:
    """Accuracy points within which a paper-scale reproduction 'agrees' with a published cell."""
    values = _json("provenance.json")["tolerance"]["values"]
    if dataset not in values:
        raise UserError(f"unknown dataset {dataset!r}; expected one of {sorted(values)}")
    return float(values[dataset])
