"""`replicate data ...`: datasets. `prepare` turns the paper's datasets on disk into LMDBs; `embedded`
lists the generated stand-ins and draws their galleries."""
from __future__ import annotations

import argparse

from convert.errors import UserError
from lmdb_tools.prepare import PAPER_SIZES, prepare
from replicate import options


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `data` and its subcommands (each adds itself to `sub`)."""
    parser = subparsers.add_parser("data", help="datasets: prepare the paper's datasets as LMDBs; embedded stand-ins")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    _register_prepare(sub)
    _register_embedded(sub)


def _register_prepare(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("prepare", help="RVL-CDIP / ILSVRC / ANDOC from disk -> LMDBs and mean files "
                            "at 227 and the Crop nets' sizes (resumable)")
    parser.add_argument("dataset", choices=["rvl-cdip", "ilsvrc", "andoc"])
    parser.add_argument("--root", required=True, help="the dataset's folder (layout: see lmdb_tools/prepare.py)")
    parser.add_argument("--out", required=True, help="folder for the LMDBs and mean files")
    parser.add_argument("--sizes", default=",".join(map(str, PAPER_SIZES)),
                        help="comma-separated square sizes (default: %(default)s)")
    options.add(parser, ("workers",))
    parser.add_argument("--overwrite", action="store_true", help="rebuild finished LMDBs too")
    parser.set_defaults(func=_prepare)


def _prepare(args: argparse.Namespace) -> int:
    try:
        sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip())
    except ValueError:
        raise UserError(f"--sizes {args.sizes!r}: expected comma-separated integers, e.g. 227,256") from None
    report = prepare(args.dataset, args.root, args.out, sizes, options.checked(args, "workers"), args.overwrite)
    print(f"{args.out}: built {len(report['built'])}, kept {len(report['kept'])} already finished")
    return 0


def _register_embedded(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("embedded", help="the embedded stand-in datasets: list them, draw a gallery")
    parser.add_argument("--list", action="store_true", help="list the embedded datasets")
    parser.add_argument("--gallery", metavar="NAME", help="draw examples of every class of NAME")
    parser.add_argument("--out", default="gallery.png", help="gallery PNG path (default: %(default)s)")
    parser.add_argument("--size", type=int, default=96, help="image side in the gallery (default: %(default)s)")
    parser.set_defaults(func=_embedded)


def _embedded(args: argparse.Namespace) -> int:
    from replicate.datasets import embedded
    if not args.list and not args.gallery:
        raise UserError("data embedded: give --list or --gallery NAME")
    if args.list:
        for name, ds in embedded.EMBEDDED.items():
            print(f"{name:14} stands in for {ds.stands_in_for}: {len(ds.classes)} classes, "
                  f"{'colour' if ds.colour else 'grey'}; {ds.description}")
    if args.gallery:
        path = embedded.gallery(args.gallery, args.out, size=args.size)
        print(f"wrote {path}")
    return 0
