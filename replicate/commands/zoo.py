"""`replicate zoo list [--dataset rvl-cdip|ilsvrc]`: the networks of Table 3 with family, training range, seed."""
from __future__ import annotations

import argparse

from replicate import zoo


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `zoo` with its `list` action."""
    parser = subparsers.add_parser("zoo", help="the 36 networks per dataset of Table 3")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="print every net: dataset, id, Table 3 name, family, range, seed")
    listing.add_argument("--dataset", choices=zoo.DATASETS, help="only this dataset (default: both)")
    listing.set_defaults(func=run_list)


def run_list(args: argparse.Namespace) -> int:
    """Print the zoo as an aligned table."""
    header = ("dataset", "id", "name", "family", "training range", "rank", "seed")
    rows = [(n.dataset, n.id, n.name, n.family, " ".join(f"{k}={v}" for k, v in n.params.items()) or "-",
             str(n.range_rank), str(n.seed)) for n in zoo.nets(args.dataset)]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    print(f"{len(rows)} nets")
    return 0
