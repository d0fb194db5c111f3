"""`replicate train --solver S.prototxt [--weights W.caffemodel | --snapshot S.solverstate]`: Caffe's `caffe train`.

Runs in the current directory: the solver's net, data sources and snapshot_prefix resolve against
it, as they do for Caffe. Progress bar: iteration, loss, lr, images/s; the plain log (every
iteration's loss and lr, every TEST output, the configuration and dropout convention) goes to
PREFIX.log next to the snapshots. Ctrl-C stops after the current iteration with a snapshot (exit 130).
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from convert.errors import UserError, about
from replicate.solver import RESUME_DATA, Solver
from replicate import options


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `train`."""
    parser = subparsers.add_parser("train", help="train a solver.prototxt with Caffe's solver rules")
    parser.add_argument("--solver", required=True, help="solver.prototxt (paths inside resolve against the cwd)")
    parser.add_argument("--weights", help="caffemodel(s), comma-separated, to start from (finetuning)")
    parser.add_argument("--snapshot", help=".solverstate to resume from")
    parser.add_argument("--resume-data", choices=RESUME_DATA, default="continue",
                        help="on resume: 'continue' data where the interrupted run stopped (default; equals an "
                             "uninterrupted run), or 'caffe': from record 0, as a resumed Caffe process does")
    options.add(parser, ("dropout",))
    parser.add_argument("--seed", type=int, help="override the solver's random_seed")
    options.add(parser, ("device",))
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train to max_iter; print the TEST outputs and the snapshots written."""
    if args.weights and args.snapshot:
        raise UserError("give --snapshot to resume training or --weights to finetune, not both")
    # Errors of the nets, data and schedule name the solver (and the snapshot or weights it started from).
    start = [f for f in (args.snapshot, args.weights) if f]
    with about(f"{args.solver}" + (f" (from {', '.join(start)})" if start else ""), also=(args.solver, *start)):
        return _train(args)


def _train(args: argparse.Namespace) -> int:
    solver = Solver(args.solver, root=Path.cwd(), weights=args.weights, seed=args.seed, dropout=args.dropout,
                    device=options.checked(args, "device"), progress=True)
    if args.snapshot:
        solver.restore(args.snapshot, resume_data=args.resume_data)
    print(f"training {solver.net.name!r} ({solver.type}, seed {solver.seed}, dropout {solver.dropout}) "
          f"from iteration {solver.iter} to {solver.param.max_iter}; log: {solver.log_path}")

    def request_stop(signum, frame):
        """First Ctrl-C: finish the iteration and snapshot (as Caffe does); a second one aborts."""
        signal.signal(signal.SIGINT, signal.default_int_handler)
        solver.stop_requested = True

    previous = signal.signal(signal.SIGINT, request_stop)
    try:
        solver.solve()
    finally:
        signal.signal(signal.SIGINT, previous)
    if solver.stop_requested:
        print(f"stopped at iteration {solver.iter}; resume with --snapshot {solver.last_snapshot}", file=sys.stderr)
        return 130
    for record in solver.records:
        if record["phase"] == "test":
            outputs = ", ".join(f"{k} = {v}" for k, v in record.items() if k not in ("phase", "net", "iter"))
            print(f"iteration {record['iter']}, test net {record['net']}: {outputs}")
    final = [r for r in solver.records if r["phase"] == "train"]
    if final:
        print(f"iteration {final[-1]['iter']}, loss = {final[-1]['loss']:.6g}")
    print(f"last snapshot: {solver.last_snapshot}")
    return 0
