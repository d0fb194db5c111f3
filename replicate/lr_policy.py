"""Caffe's learning-rate policies (SGDSolver::GetLearningRate), evaluated at one iteration.

The rate used for the update of iteration `iter` is the one computed before `iter` is incremented.
`multistep` keeps state: Caffe advances `current_step` by at most one per call, when `iter` reaches
the next `stepvalue`; `step` overwrites `current_step` with iter / stepsize. Both are saved in the
.solverstate, so the state travels as an argument and a return value here.
"""
from __future__ import annotations

import math

from convert import caffe_pb2 as pb
from convert.errors import UserError

POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")


def _unknown(policy: str) -> UserError:
    return UserError(f"solver: unknown lr_policy {policy!r}; expected one of {', '.join(POLICIES)}")


def check_policy(param: pb.SolverParameter) -> None:
    """UserError for an unknown policy or a parameter the policy cannot work without."""
    policy = param.lr_policy
    if policy not in POLICIES:
        raise _unknown(policy)
    if policy == "step" and param.stepsize <= 0:
        raise UserError("solver: lr_policy 'step' needs stepsize > 0")
    if policy == "poly" and param.max_iter <= 0:
        raise UserError("solver: lr_policy 'poly' needs max_iter > 0")


def learning_rate(param: pb.SolverParameter, iteration: int, current_step: int) -> tuple[float, int]:
    """(rate, new current_step) as Caffe computes them at `iteration`; UserError when it is no real number."""
    try:
        rate, current_step = _rate(param, iteration, current_step)
    except (OverflowError, ZeroDivisionError) as e:
        rate = e
    if not isinstance(rate, float | int):   # e.g. gamma ** huge, or a negative base to a fractional power
        raise UserError(f"solver: lr_policy {param.lr_policy!r} gives no real learning rate at iteration "
                        f"{iteration} ({rate}); check base_lr, gamma, power, stepsize and max_iter")
    return rate, current_step


def _rate(param: pb.SolverParameter, iteration: int, current_step: int) -> tuple[float, int]:
    policy, base, gamma, power = param.lr_policy, param.base_lr, param.gamma, param.power
    if policy == "fixed":
        rate = base
    elif policy == "step":
        current_step = iteration // param.stepsize
        rate = base * gamma ** current_step
    elif policy == "exp":
        rate = base * gamma ** iteration
    elif policy == "inv":
        rate = base * (1.0 + gamma * iteration) ** -power
    elif policy == "multistep":
        if current_step < len(param.stepvalue) and iteration >= param.stepvalue[current_step]:
            current_step += 1
        rate = base * gamma ** current_step
    elif policy == "poly":
        rate = base * (1.0 - iteration / param.max_iter) ** power
    elif policy == "sigmoid":
        rate = base * (1.0 / (1.0 + math.exp(-gamma * (iteration - param.stepsize))))
    else:
        raise _unknown(policy)
    return rate, current_step
