"""The options every experiment command shares, declared once: flags, defaults (replicate/config.py), help, checks.

An experiment names the options it takes (`Experiment.options`); `add` puts them on its parser and
`resolve` validates the parsed values into one frozen `RunOptions`, which every output records
(`RunOptions.record()`). Meanings are the same in every command: `--workers N` is N processes (N >= 1;
default: all cores), `--dataset` is repeatable and takes `all`.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from convert.errors import UserError
from convert.layers.base import DROPOUT_CAFFE, DROPOUT_PAPER, POOLING_CAFFE, POOLING_RULES
from replicate import config, executors
from replicate.measure import fitters, metrics

ALL = "all"


@dataclass(frozen=True)
class RunOptions:
    """An experiment command's resolved options (what produced an output)."""
    datasets: tuple[str, ...]
    scale: str = config.DEFAULT_SCALE
    out: Path = config.DEFAULT_OUT
    data_root: Path | None = None
    device: str = config.DEFAULT_DEVICE
    dropout: str = config.DEFAULT_DROPOUT
    workers: int = 1
    executor: str = config.DEFAULT_EXECUTOR
    ray_address: str | None = None
    fitter: str = config.DEFAULT_FITTER
    l2: str = config.DEFAULT_L2
    families: tuple[str, ...] = ()
    rebuild: tuple[str, ...] = ()
    progress: bool = True
    extra: dict = field(default_factory=dict)   # an experiment's own options (e.g. fig11 --seeds)

    def record(self) -> dict[str, Any]:
        """JSON form for sidecars and table headers."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def _workers(value: int | None) -> int:
    if value is None:
        return os.cpu_count() or 1
    if value < 1:
        raise UserError(f"--workers {value}: expected a number of processes >= 1 (default: all {os.cpu_count()} cores)")
    return value


def _device(value: str) -> str:
    if value == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is visible to torch (this torch build: "
                            f"{torch.__version__}); install a CUDA build of torch or use --device cpu")
    return value


def _scale(value: str) -> str:
    return config.get_scale(value).name


def _fitter(value: str) -> str:
    fitters.get_fitter(value)
    return value


# name -> (flags, argparse keywords, check). Defaults come from replicate/config.py.
OPTIONS: dict[str, tuple[tuple[str, ...], dict, Any]] = {
    "dataset": (("--dataset",), dict(action="append", metavar="NAME",
                                     help="dataset(s), repeatable, or 'all' (default: the experiment's)"), None),
    "scale": (("--scale",), dict(default=config.DEFAULT_SCALE,
                                 help=f"{', '.join(config.SCALES)} (default: {config.DEFAULT_SCALE})"), _scale),
    "data_root": (("--data-root",), dict(type=Path, help="a directory prepared by `replicate data prepare` "
                                                         "(needed at paper scale)"), None),
    "device": (("--device",), dict(default=config.DEFAULT_DEVICE, choices=["cpu", "cuda"]), _device),
    "dropout": (("--dropout",), dict(default=config.DEFAULT_DROPOUT, choices=[DROPOUT_CAFFE, DROPOUT_PAPER],
                                     help="test-time dropout of the nets and of phi (caffe: identity at TEST; "
                                          "paper: halve at TEST)"), None),
    "pooling": (("--pooling",), dict(default=POOLING_CAFFE, choices=list(POOLING_RULES),
                                     help="pooling output sizes: caffe (BVLC) or darknet (the Darknet2Caffe fork's "
                                          "extra window when kernel - stride is odd, for YOLO nets)"), None),
    "workers": (("--workers",), dict(type=int, help="processes at once, >= 1 (default: all CPU cores)"), _workers),
    "executor": (("--executor",), dict(default=config.DEFAULT_EXECUTOR, choices=list(executors.EXECUTORS),
                                       help="where jobs run: local (a pool of --workers processes) or ray "
                                            f"(default: {config.DEFAULT_EXECUTOR})"), None),
    "ray_address": (("--ray-address",), dict(metavar="ADDR", help="with --executor ray: 'auto' (the cluster this "
                                             "machine joined) or HOST:PORT; none starts a local Ray instance"), None),
    "out": (("--out",), dict(type=Path, default=config.DEFAULT_OUT,
                             help=f"results store and outputs (default: {config.DEFAULT_OUT}/)"),
            lambda p: p.resolve()),   # absolute: the solver resolves job files against the job directory
    "fitter": (("--fitter",), dict(default=config.DEFAULT_FITTER,
                                   help=f"map fitter: {', '.join(fitters.FITTERS)} (default: {config.DEFAULT_FITTER})"),
               _fitter),
    "l2": (("--l2",), dict(default=config.DEFAULT_L2,
                           help=f"L_L2 normalisation: {', '.join(metrics.L2_NORMALISATIONS)} (default: "
                                f"{config.DEFAULT_L2}, the authors' code, what Fig. 10 plots)"), metrics.check_l2),
    "families": (("--families",), dict(nargs="+", metavar="FAMILY", help="only these families"), None),
    "rebuild": (("--rebuild",), dict(action="append", default=[], metavar="NAME",
                                     help="recompute the stored job(s) of this network id or data set (repeatable)"),
                tuple),
    "quiet": (("--quiet",), dict(action="store_true", help="no progress bars"), None),
}


def add(parser: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    """Put the named shared options on a parser."""
    for name in names:
        flags, kwargs, _ = OPTIONS[name]
        parser.add_argument(*flags, dest=name, **kwargs)


def check_names(flag: str, chosen: list[str] | None, valid: tuple[str, ...], default: tuple[str, ...],
                context: str) -> tuple[str, ...]:
    """Repeatable name options (--dataset, --families): `all` or valid names; UserError listing the valid ones."""
    if not chosen:
        return default
    if ALL in chosen:
        return valid
    # `all` is accepted everywhere; the message lists it for datasets where it is also the default
    listed = (ALL, *valid) if flag == "dataset" and default == valid and len(valid) > 1 else valid
    for name in chosen:
        if name not in valid:
            raise UserError(f"{context}: unknown {flag} {name!r}; expected one of {', '.join(listed)}")
    return tuple(dict.fromkeys(chosen))


def checked(args: argparse.Namespace, name: str) -> Any:
    """One shared option's parsed value after its check (UserError with one line when it is bad)."""
    _, _, check = OPTIONS[name]
    value = getattr(args, name)
    return check(value) if check is not None else value


def resolve(args: argparse.Namespace, names: tuple[str, ...], datasets: tuple[str, ...],
            families: tuple[str, ...] = (), **extra: Any) -> RunOptions:
    """Validate the parsed shared options into RunOptions (datasets and families already checked by check_names)."""
    values: dict[str, Any] = {}
    for name in names:
        if name not in ("dataset", "families", "quiet"):
            values[name] = checked(args, name)
    if "workers" not in names:
        values["workers"] = 1
    if values.get("ray_address") and values.get("executor") != "ray":
        raise UserError(f"--ray-address {values['ray_address']}: only with --executor ray")
    return RunOptions(datasets=datasets, families=families, progress=not getattr(args, "quiet", False),
                      extra=extra, **values)
