"""`replicate transforms list|apply|gallery`: the paper's input transformations, inspected one by one."""
from __future__ import annotations

import argparse

import cv2

from convert.errors import UserError
from replicate.transforms import FAMILIES, REFERENCE_SIZE
from replicate.transforms.gallery import DATASETS, comparison, gallery, read_image, synthetic_image, write_png


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `transforms` and its three actions."""
    parser = subparsers.add_parser("transforms", help="list, apply or picture the paper's input transformations")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="every family: parameters, units, training ranges, measurement grid")
    listing.add_argument("--size", type=int, default=REFERENCE_SIZE, help="input side for the grid (default 227)")
    listing.set_defaults(func=run_list)

    apply = actions.add_parser("apply", help="apply one transform to one image file (parameters taken literally)")
    apply.add_argument("image", help="input image file (grey stays grey)")
    apply.add_argument("--family", required=True, help=f"one of {', '.join(FAMILIES)}")
    apply.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                       help="a parameter as named by `replicate transforms list` (repeatable)")
    apply.add_argument("--seed", type=int, help="seed of the random field (families with a seed parameter)")
    apply.add_argument("--out", required=True, help="output PNG")
    apply.set_defaults(func=run_apply)

    pictures = actions.add_parser("gallery", help="one image under a family's measurement grid (Figs. 5-6)")
    pictures.add_argument("--family", required=True, help=f"one of {', '.join(FAMILIES)}")
    pictures.add_argument("--dataset", choices=DATASETS, default="rvl-cdip",
                          help="which stand-in image to use when --image is not given")
    pictures.add_argument("--image", help="use this image file instead (resized to --size, crop: to S)")
    pictures.add_argument("--size", type=int, default=REFERENCE_SIZE, help="net input side (default 227)")
    pictures.add_argument("--resize", type=int, help="crop only: the Crop net's S at 227 px (default 256)")
    pictures.add_argument("--compare", action="store_true",
                          help="below the grid at --size, the paper's 227-px grid shrunk to --size (strength check)")
    pictures.add_argument("--out", required=True, help="output PNG")
    pictures.set_defaults(func=run_gallery)


def run_list(args: argparse.Namespace) -> int:
    """Print every family with its parameters, training configurations and measurement grid."""
    for family in FAMILIES.values():
        print(f"{family.name}  ({family.title})")
        print(f"  {family.description}")
        print(f"  size rule: {family.size_rule}")
        for p in family.params:
            choices = f" {{{', '.join(p.choices)}}}" if p.choices else ""
            print(f"  param {p.name} [{p.unit}]{choices}: {p.help}")
        print(f"  training (Table 3): {'; '.join(str(c) for c in family.training)}")
        grid = family.measurement_grid(args.size)
        print(f"  measurement grid at {args.size} px ({len(grid)}): {', '.join(s.label for s in grid) or '-'}")
        print()
    return 0


def run_apply(args: argparse.Namespace) -> int:
    """Apply one transform with literal parameters and write the result as PNG."""
    family = FAMILIES[args.family]
    params = dict(family.parse_param(text) for text in args.param)
    if args.seed is not None:
        if "seed" not in {p.name for p in family.params}:
            raise UserError(f"--seed: family {family.name} draws no random numbers")
        params.setdefault("seed", args.seed)
    image = read_image(args.image)
    out = family.apply(image, **params)
    write_png(args.out, out, {"command": "transforms apply", "image": str(args.image),
                              "family": family.name, "params": params})
    print(f"wrote {args.out}: {family.name} {params}")
    return 0


def run_gallery(args: argparse.Namespace) -> int:
    """Write the family's measurement grid applied to one image as a labelled PNG sheet."""
    family = FAMILIES[args.family]
    config = {"resize": args.resize} if args.resize is not None else None
    if args.resize is not None and family.name != "crop":
        raise UserError("--resize: only the crop family has an S to choose")
    if args.compare and args.size >= REFERENCE_SIZE:
        raise UserError(f"--compare: shows a smaller side against the paper's {REFERENCE_SIZE} px; give --size below it")
    side = REFERENCE_SIZE if args.compare else args.size   # --compare shrinks the 227-px picture itself
    if args.image:
        image = read_image(args.image)
        if family.name != "crop":
            image = cv2.resize(image, (side, side), interpolation=cv2.INTER_LINEAR)
    else:
        image = synthetic_image(args.dataset, side)
    sheet = (comparison if args.compare else gallery)(family, image, args.size, config)
    write_png(args.out, sheet, {"command": "transforms gallery", "family": family.name, "size": args.size,
                                "compare": args.compare, "image": args.image or f"synthetic {args.dataset} seed 0",
                                "config": family.default_config | (config or {}),
                                "grid": [[s.label, s.params] for s in family.measurement_grid(args.size, config)]})
    print(f"wrote {args.out}: {family.name} grid on {args.image or args.dataset} at {args.size} px")
    return 0
