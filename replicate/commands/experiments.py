"""One subcommand per registered experiment (replicate/experiments/): `replicate table3`, `replicate fig7`, ..."""
from __future__ import annotations

import argparse
import re

from replicate import options as opts


def register(sub: argparse._SubParsersAction) -> None:
    from replicate.experiments import EXPERIMENTS
    for experiment in sorted(EXPERIMENTS.values(), key=_order):
        p = sub.add_parser(experiment.name, help=f"{experiment.paper}: {experiment.help}")
        opts.add(p, experiment.options)
        p.set_defaults(**experiment.defaults)
        if experiment.arguments is not None:
            experiment.arguments(p)
        p.set_defaults(func=run, experiment=experiment.name)


def _order(experiment) -> tuple:
    """Tables first, then figures by number (fig2 before fig10)."""
    match = re.fullmatch(r"([a-z]+)(\d+)", experiment.name)
    return (match.group(1) != "table", int(match.group(2))) if match else (True, 0, experiment.name)


def run(args: argparse.Namespace) -> int:
    from replicate.experiments import base, get
    experiment = get(args.experiment)
    datasets = opts.check_names("dataset", getattr(args, "dataset", None), experiment.datasets, experiment.default_datasets,
                                experiment.name)
    families = opts.check_names("family", getattr(args, "families", None), experiment.families,
                                experiment.default_families or experiment.families, experiment.name)
    extra = experiment.extra(args) if experiment.extra is not None else {}
    options = opts.resolve(args, experiment.options, datasets, families, **extra)
    result, checks, outputs, ctx = base.run(experiment, options)
    if experiment.report is not None:
        print(experiment.report(ctx, result, checks, outputs))
    else:
        from replicate import claims
        print(claims.render(checks))
    print(f"written ({ctx.seconds():.0f} s): " + ", ".join(str(p) for p in outputs))
    return 0
