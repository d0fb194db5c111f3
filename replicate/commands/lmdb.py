"""`replicate lmdb create|mean|inspect`: Caffe's convert_imageset and compute_image_mean, and a look inside."""
from __future__ import annotations

import argparse
import os

from lmdb_tools.mean import channel_means, write_mean
from lmdb_tools.summary import summarize, write_grid
from lmdb_tools.writer import ImagesetOptions, convert_imageset
from replicate import options


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `lmdb` with its create / mean / inspect subcommands."""
    parser = subparsers.add_parser("lmdb", help="Caffe Datum LMDBs: create, mean, inspect")
    sub = parser.add_subparsers(dest="lmdb_command", metavar="ACTION", required=True)

    create = sub.add_parser("create", help="convert_imageset: images + list file -> LMDB of Datums")
    create.add_argument("root", help="folder the list's paths are relative to (joined as a string, "
                        "as Caffe does: give the trailing /)")
    create.add_argument("list_file", help="lines `path label`")
    create.add_argument("db", help="LMDB directory to create")
    create.add_argument("--resize_height", type=int, default=0)
    create.add_argument("--resize_width", type=int, default=0)
    create.add_argument("--gray", action="store_true", help="read images as grayscale")
    create.add_argument("--shuffle", action="store_true",
                        help="permute the list (numpy, seeded: deterministic, but not Caffe's order)")
    create.add_argument("--seed", type=int, default=0, help="seed of --shuffle")
    create.add_argument("--encoded", action="store_true", help="store encoded image bytes")
    create.add_argument("--encode_type", default="", help="png, jpg, ... (implies --encoded)")
    create.add_argument("--check_size", action="store_true", help="all records must have equal size")
    create.add_argument("--skip-bad", dest="skip_bad", action="store_true",
                        help="skip unreadable images (reported) instead of stopping")
    create.add_argument("--overwrite", action="store_true", help="replace an existing DB")
    options.add(create, ("workers",))
    create.set_defaults(func=_create)

    mean = sub.add_parser("mean", help="compute_image_mean: mean image of an LMDB as a .binaryproto")
    mean.add_argument("db")
    mean.add_argument("out", help="OUT.binaryproto")
    mean.set_defaults(func=_mean)

    inspect = sub.add_parser("inspect", help="count, shapes, storage, labels and first keys of an LMDB")
    inspect.add_argument("db")
    inspect.add_argument("--grid", metavar="OUT.png", help="also draw the first images with their labels")
    inspect.add_argument("--count", type=int, default=16, help="images in the grid")
    inspect.set_defaults(func=_inspect)


def _create(args: argparse.Namespace) -> int:
    opts = ImagesetOptions(resize_height=max(0, args.resize_height), resize_width=max(0, args.resize_width),
                           gray=args.gray, shuffle=args.shuffle, seed=args.seed,
                           encoded=args.encoded or bool(args.encode_type), encode_type=args.encode_type,
                           check_size=args.check_size, skip_bad=args.skip_bad)
    summary = convert_imageset(args.root, args.list_file, args.db, opts, overwrite=args.overwrite,
                               workers=options.checked(args, "workers"))
    print(f"{args.db}: wrote {summary['written']} records")
    if summary["skipped"]:
        lines = ", ".join(map(str, summary["skipped"][:20])) + (" ..." if len(summary["skipped"]) > 20 else "")
        print(f"skipped {len(summary['skipped'])} unreadable images (list lines {lines})")
    return 0


def _mean(args: argparse.Namespace) -> int:
    mean = write_mean(args.db, args.out)
    print(f"{args.out}: mean of shape {tuple(mean.shape)} (C, H, W)")
    for c, value in enumerate(channel_means(mean)):
        print(f"mean_value channel {c}: {value:.6f}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    info = summarize(args.db)
    print(f"{os.fspath(args.db)}: {info['records']} records")
    print("storage: " + ", ".join(f"{kind} x{n}" for kind, n in info["kinds"].items()))
    print("shapes (C, H, W): " + ", ".join(f"{c}x{h}x{w} x{n}" for (c, h, w), n in info["shapes"].items()))
    print("labels: " + ", ".join(f"{label}: {n}" for label, n in info["labels"].items()))
    print("first keys: " + ", ".join(info["first_keys"]))
    if args.grid:
        write_grid(args.db, args.grid, args.count)
        print(f"wrote {args.grid}")
    return 0
