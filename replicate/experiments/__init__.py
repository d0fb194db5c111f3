"""The paper's artefacts as a registry of experiments, one module each (like Caffe's layer registry).

    base         Experiment, Context, the driver (inputs -> training -> compute -> claims -> render)
    table3       Table 3: accuracy of every zoo network on untransformed images
    invariance   Figs. 1, 2, 7-10: invariance and equivariance (Eqs. 2, 8) over the measurement grids
    distance     Figs. 3, 11, 12: representation distance between every pair of networks (Eqs. 4, 9)
    finetune     Tables 2 and 4: equivariance before and after finetuning with Eq. 7

Every module of this package is imported and calls `register` for each experiment it defines; the
`replicate` CLI makes one subcommand per registered experiment (replicate/commands/experiments.py).
"""
from __future__ import annotations

import importlib
import pkgutil

from convert.errors import UserError
from replicate.experiments.base import Experiment

EXPERIMENTS: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    """Add an experiment to the registry (names are unique)."""
    if experiment.name in EXPERIMENTS:
        raise ValueError(f"experiment {experiment.name!r} registered twice")
    EXPERIMENTS[experiment.name] = experiment
    return experiment


def get(name: str) -> Experiment:
    """The named experiment; UserError listing the registered ones."""
    if name not in EXPERIMENTS:
        raise UserError(f"unknown experiment {name!r}; expected one of {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")
