"""`replicate data ...`: datasets. `prepare` turns the paper's datasets on disk into LMDBs."""
from __future__ import annotations

import argparse

from convert.errors import UserError
from lmdb_tools.prepare import PAPER_SIZES, prepare


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `data` and its subcommands (each adds itself to `sub`)."""
    parser = subparsers.add_parser("data", help="datasets: prepare the paper's datasets as LMDBs")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    _register_prepare(sub)


def _register_prepare(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("prepare", help="RVL-CDIP / ILSVRC / ANDOC from disk -> LMDBs and mean files "
                            "at 227 and the Crop nets' sizes (resumable)")
    parser.add_argument("dataset", choices=["rvl-cdip", "ilsvrc", "andoc"])
    parser.add_argument("--root", required=True, help="the dataset's folder (layout: see lmdb_tools/prepare.py)")
    parser.add_argument("--out", required=True, help="folder for the LMDBs and mean files")
    parser.add_argument("--sizes", default=",".join(map(str, PAPER_SIZES)),
                        help="comma-separated square sizes (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=0, help="processes (default: all cores)")
    parser.add_argument("--overwrite", action="store_true", help="rebuild finished LMDBs too")
    parser.set_defaults(func=_prepare)


def _prepare(args: argparse.Namespace) -> int:
    try:
        sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip())
    except ValueError:
        raise UserError(f"--sizes {args.sizes!r}: expected comma-separated integers, e.g. 227,256") from None
    report = prepare(args.dataset, args.root, args.out, sizes, args.workers or None, args.overwrite)
    print(f"{args.out}: built {len(report['built'])}, kept {len(report['kept'])} already finished")
    return 0
