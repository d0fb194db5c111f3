"""`replicate test --model NET.prototxt --weights W.caffemodel --iterations N`: Caffe's `caffe test`.

Runs the net (TEST phase by default) N times on its own data layers and prints each output averaged
over the iterations, loss outputs also multiplied by their loss weight, as Caffe reports them.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from convert import caffe_pb2 as pb
from convert import protoio
from convert.errors import UserError, about
from convert.net import Net
from replicate.solver import evaluate
from replicate import options


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `test`."""
    parser = subparsers.add_parser("test", help="score a trained net: outputs averaged over N batches")
    parser.add_argument("--model", required=True, help="net prototxt (data sources resolve against the cwd)")
    parser.add_argument("--weights", required=True, help="caffemodel(s), comma-separated")
    parser.add_argument("--iterations", type=int, default=50, help="batches to run (default 50, as Caffe)")
    parser.add_argument("--phase", choices=("TEST", "TRAIN"), default="TEST")
    options.add(parser, ("dropout",))
    parser.add_argument("--seed", type=int, default=0, help="seeds data-layer randomness")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print `name = mean` per output (and the weighted loss) and the configuration used."""
    import lmdb_tools  # noqa: F401  (registers the Data layer)
    if args.iterations < 1:
        raise UserError(f"--iterations must be at least 1, got {args.iterations}")
    with about(args.model):
        net = Net(protoio.read_net(args.model), pb.Phase.Value(args.phase), root=Path.cwd(), seed=args.seed,
                  dropout=args.dropout)
        for path in args.weights.split(","):
            net.load_weights(path)
        print(f"testing {net.name!r}: {args.model} with {args.weights}, {args.iterations} iterations, phase "
              f"{args.phase}, dropout {args.dropout}, seed {args.seed}")
        scores = evaluate(net, args.iterations, progress=True)
    for name, mean in scores.items():
        weight = net.loss_weights.get(name, 0.0)
        weighted = f" (* {weight:g} = {weight * mean:.6g} loss)" if weight and isinstance(mean, float) else ""
        print(f"{name} = {mean}{weighted}")
    return 0
