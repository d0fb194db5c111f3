"""The networks of Table 3 as data (paper_tables/zoo.csv): family, training range, seed, per dataset.

Table 3 lists 36 per dataset (33 with a transform, 3 baselines); the text says 35 or 37 in places and
names no other net, so the zoo follows the table (paper_tables/provenance.json, row_count_note).

API:
    FAMILIES, DATASETS
    nets(dataset=None, family=None) -> list[Net]   in Table 3 order (baselines first), filtered
    get(name, dataset) -> Net                      by Table 3 name ("Rotation θ = ±10") or id ("rotation_10"),
                                                   case-insensitive; unknown -> UserError listing the valid ones
    widest(dataset, family) -> Net                 the net trained with the widest range of a family
                                                   (the one Figs. 1, 7 compare against the baseline)
    as_trained_by(net, convention) -> Net          the net under a perspective-sigma convention (below)

Training parameters are the transform family's training config (replicate.transforms FAMILIES[f].training),
in docs/protocol.md's units at 227 px: color_jitter sigma; crop resize (resize to S x S, then a 227 crop); elastic
sigma and alpha_max; blur and noise s_max; mirror flip = flip_ud / flip_lr / flip_both (Table 3's
"Mirror Horz." is flip_ud, the up-down flip, by the authors' naming); perspective s_max; rotation and
shear t (uniform in [-t, t] degrees).

range_rank orders a family's nets by how much they transform (1 = mildest; baselines 0). For elastic the
mean displacement grows with alpha_max and shrinks with the smoothing sigma, so (sigma 2, alpha 10) is the
widest, which is also the elastic net the paper finetuned in Tables 2 and 4. Mirror ranks both flips above
either one. Crop 320 is the widest crop, although Tables 2 and 4 finetuned Crop 256 (see
replicate.paper.finetune_table for the nets the paper finetuned).

Perspective sigma: the paper labels its perspective nets s_max = 0.001 .. 0.004 (Table 3) and this zoo
follows it; the authors' generator (python/generation/generateExperiement.py, augmentation group) trained
them with 0.0001 .. 0.0004, a tenth (docs/protocol.md, "Paper and code disagree"). `as_trained_by(net,
"code")` is the net with the code's range: id `<id>-code` (a store entry of its own), the same Table 3
name, seed and rank; `get` accepts those ids.

Seeds: every net has its own seed (the paper's nets were trained independently; Baselines 1-3 differ only
in it). Edit zoo.csv to change them. `replica(net, k)` is the same net with another seed (table3 --seeds).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

from convert.errors import UserError
from replicate.paper import DATASETS, PAPER_TABLES, parse_params, read_csv

SIGMA_CONVENTIONS = ("paper", "code")   # perspective s_max as Table 3 labels it, or as the authors' code trained
CODE_SUFFIX = "-code"                   # id suffix of a perspective net under the "code" convention
CODE_PERSPECTIVE_FACTOR = 0.1           # generateExperiement.py's 0.0001..0.0004 over Table 3's 0.001..0.004
FAMILIES = ("baseline", "color_jitter", "crop", "elastic", "blur", "noise", "mirror", "perspective",
            "rotation", "shear")
ZOO_CSV = PAPER_TABLES / "zoo.csv"


@dataclass(frozen=True)
class Net:
    """One network of Table 3 on one dataset."""
    dataset: str
    id: str
    name: str
    family: str
    params: dict[str, int | float]
    range_rank: int
    seed: int


def replica(net: Net, k: int) -> Net:
    """Replica k of a net (--seeds): the same net with seed net.seed + k * REPLICA_SEED_STRIDE; k = 0 is the net."""
    from replicate.config import REPLICA_SEED_STRIDE
    if k < 0:
        raise ValueError(f"replica {k}: expected k >= 0")
    return net if k == 0 else replace(net, seed=net.seed + k * REPLICA_SEED_STRIDE)


@lru_cache(maxsize=None)
def _all() -> tuple[Net, ...]:
    out: list[Net] = []
    seen: set[tuple[str, str]] = set()
    for line, r in read_csv(ZOO_CSV, ["dataset", "id", "name", "family", "params", "range_rank", "seed"]):
        where = f"{ZOO_CSV}:{line}"
        if r["dataset"] not in DATASETS:
            raise UserError(f"{where}: dataset {r['dataset']!r}; expected one of {list(DATASETS)}")
        if r["family"] not in FAMILIES:
            raise UserError(f"{where}: family {r['family']!r}; expected one of {list(FAMILIES)}")
        for key in ((r["dataset"], r["id"].lower()), (r["dataset"], r["name"].lower())):
            if key in seen:
                raise UserError(f"{where}: {key[1]!r} appears twice for {key[0]}")
            seen.add(key)
        try:
            rank, seed = int(r["range_rank"]), int(r["seed"])
        except ValueError:
            raise UserError(f"{where}: range_rank and seed must be integers") from None
        out.append(Net(dataset=r["dataset"], id=r["id"], name=r["name"], family=r["family"],
                       params=parse_params(r["params"], where), range_rank=rank, seed=seed))
    return tuple(out)


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}; expected one of {list(DATASETS)}")


def nets(dataset: str | None = None, family: str | None = None) -> list[Net]:
    """The zoo's nets, optionally only one dataset's and/or one family's."""
    if dataset is not None:
        _check_dataset(dataset)
    if family is not None and family not in FAMILIES:
        raise UserError(f"unknown family {family!r}; expected one of {list(FAMILIES)}")
    return [n for n in _all() if dataset in (None, n.dataset) and family in (None, n.family)]


def get(name: str, dataset: str) -> Net:
    """The net of `dataset` whose Table 3 name or id is `name` (case-insensitive; `<id>-code`: as_trained_by code)."""
    key = name.lower()
    base = key[:-len(CODE_SUFFIX)] if key.endswith(CODE_SUFFIX) else None
    candidates = nets(dataset)
    for n in candidates:
        if key in (n.id.lower(), n.name.lower()):
            return n
        if base is not None and n.family == "perspective" and base in (n.id.lower(), n.name.lower()):
            return as_trained_by(n, "code")
    valid = ", ".join(f"{n.id} ({n.name})" for n in candidates)
    raise UserError(f"unknown net {name!r} for {dataset}; valid: {valid}")


def widest(dataset: str, family: str) -> Net:
    """The family's net with the highest range_rank (Baseline 1 for the baseline family)."""
    members = nets(dataset, family)
    return max(members, key=lambda n: n.range_rank)  # max keeps the first on ties: Baseline 1


def as_trained_by(net: Net, convention: str) -> Net:
    """The net under a perspective-sigma convention: "paper" is the net; "code" trains s_max / 10 (see above)."""
    if convention not in SIGMA_CONVENTIONS:
        raise UserError(f"perspective sigma convention {convention!r}; expected one of {', '.join(SIGMA_CONVENTIONS)}")
    if convention == "paper" or net.family != "perspective":
        return net
    # round: 0.003 * 0.1 is 0.00030000000000000003 in floats; the code's value is 0.0003
    return replace(net, id=net.id + CODE_SUFFIX,
                   params={"s_max": round(net.params["s_max"] * CODE_PERSPECTIVE_FACTOR, 12)})
