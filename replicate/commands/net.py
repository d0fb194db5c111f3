"""`replicate net summary|forward`: inspect a Caffe net and run it (the way to debug a conversion).

Paths inside a prototxt (LMDB sources, mean files) resolve against the working directory, as in Caffe.
"""
from __future__ import annotations

import argparse
import io
import json
import tokenize
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from convert import caffe_pb2 as pb
from convert import protoio
from convert.errors import UserError, about
from convert.net import Net, numpy_blobs, with_inputs
from convert.summary import format_table, summarize
from replicate import options

PHASES = {"TRAIN": pb.TRAIN, "TEST": pb.TEST}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `net` with its `summary` and `forward` actions."""
    parser = subparsers.add_parser("net", help="Caffe nets (.prototxt + .caffemodel) in PyTorch")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    summary = actions.add_parser("summary", help="per-layer table: type, top shapes, parameters, multiply-adds")
    summary.add_argument("prototxt")
    summary.add_argument("--weights", help="a .caffemodel to load (checks every blob's shape)")
    summary.add_argument("--phase", choices=PHASES, default="TEST")
    options.add(summary, ("pooling",))
    summary.set_defaults(func=run_summary)

    forward = actions.add_parser("forward", help="run the net and write blobs to an .npz")
    forward.add_argument("prototxt")
    forward.add_argument("--weights", required=True, help="the .caffemodel")
    forward.add_argument("--input", action="append", default=[], metavar="BLOB=FILE.npy",
                         help="feed a blob from an array (replaces the layer producing it); repeatable")
    forward.add_argument("--phase", choices=PHASES, default="TEST")
    forward.add_argument("--batches", type=int, default=1,
                         help="forward passes, concatenated along axis 0 (nets with Data layers)")
    forward.add_argument("--blobs", default="all", help="'all' or a comma-separated list of blob names")
    options.add(forward, ("dropout", "pooling"))
    forward.add_argument("--seed", type=int, default=0, help="seeds fillers, dropout and data-layer draws")
    forward.add_argument("--out", required=True, help="the .npz to write (atomically)")
    forward.set_defaults(func=run_forward)


def run_summary(args: argparse.Namespace) -> int:
    """Print the table for the net, with its weights loaded if given."""
    net = Net.from_files(args.prototxt, args.weights, phase=PHASES[args.phase], pooling=args.pooling)
    title = f"net {net.name!r} ({args.prototxt}, phase {args.phase}" + (f", weights {args.weights})" if args.weights else ")")
    print(format_table(summarize(net), title))
    return 0


def _read_inputs(specs: list[str]) -> dict[str, np.ndarray]:
    inputs = {}
    for spec in specs:
        blob, sep, path = spec.partition("=")
        if not sep or not blob or not path:
            raise UserError(f"--input {spec!r}: expected BLOB=FILE.npy")
        inputs[blob] = read_npy(path)
    return inputs


def read_npy(path: str) -> np.ndarray:
    """A .npy file as float32; mapped first, so a header promising more than the file holds allocates nothing."""
    try:
        return np.array(np.load(path, mmap_mode="r", allow_pickle=False), dtype=np.float32)
    # numpy parses the header as a Python literal: a damaged one raises any of these
    except (OSError, ValueError, TypeError, SyntaxError, OverflowError, tokenize.TokenError) as e:
        raise UserError(f"{path}: cannot read a .npy array ({e})") from None


def run_forward(args: argparse.Namespace) -> int:
    """Run --batches forward passes and write the requested blobs (plus the configuration) to --out."""
    if args.batches < 1:
        raise UserError(f"--batches must be at least 1, got {args.batches}")
    inputs = _read_inputs(args.input)
    if inputs and args.batches != 1:
        raise UserError("--batches is for nets that read their own data; with --input give one batch")
    # Errors name the prototxt, and the inputs when they gave the shapes.
    with about(args.prototxt + (f" with --input {', '.join(args.input)}" if inputs else "")):
        net_param = protoio.read_net(args.prototxt)
        if inputs:
            net_param = with_inputs(net_param, {k: v.shape for k, v in inputs.items()})
        torch.manual_seed(args.seed)  # dropout masks at TRAIN
        net = Net(net_param, PHASES[args.phase], seed=args.seed, dropout=args.dropout, pooling=args.pooling)
        net.load_weights(args.weights)
        wanted = "all" if args.blobs == "all" else [b for b in args.blobs.split(",") if b]
        passes = []
        with torch.no_grad():
            for _ in tqdm(range(args.batches), desc="forward", unit="batch", disable=args.batches == 1):
                passes.append(numpy_blobs(net({k: torch.from_numpy(v) for k, v in inputs.items()}, outputs=wanted)))
    # As extract_features: passes joined along axis 0; scalars (loss, accuracy) become one value per pass.
    blobs = passes[0] if len(passes) == 1 else {
        name: np.concatenate([p[name] for p in passes]) if passes[0][name].ndim else np.stack([p[name] for p in passes])
        for name in passes[0]}
    config = {"prototxt": args.prototxt, "weights": args.weights, "inputs": args.input, "phase": args.phase,
              "batches": args.batches, "dropout": args.dropout, "seed": args.seed}
    buffer = io.BytesIO()
    np.savez(buffer, __config__=np.array(json.dumps(config)), **blobs)
    protoio.atomic_write(Path(args.out), buffer.getvalue())
    print(f"wrote {len(blobs)} blobs to {args.out}")
    return 0
