"""Caffe's update rules against an independent float64 numpy re-implementation of Caffe's formulas.

A two-layer linear net with a Euclidean loss has gradients simple enough to write by hand, so the
reference below needs neither torch nor our solver: it applies Caffe's sequence (accumulate over
iter_size, clip the global L2 norm, divide by iter_size, add weight_decay * decay_mult * w (or
sign(w) for L1), the solver type's update with rate * lr_mult, w -= update) in plain numpy loops.
Batches reach the solver through its data_override hook.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from convert import caffe_pb2 as pb
from convert.protoio import parse_text_proto
from replicate.lr_policy import learning_rate
from replicate.solver import Solver

NET = """
name: "linear2"
layer { name: "data" type: "Input" top: "x" top: "y"
        input_param { shape { dim: 6 dim: 5 } shape { dim: 6 dim: 3 } } }
layer { name: "fc1" type: "InnerProduct" bottom: "x" top: "h"
        param { lr_mult: 1 decay_mult: 0.5 } param { lr_mult: 2 decay_mult: 0 }
        inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 0.5 }
                              bias_filler { type: "constant" value: 0.1 } } }
layer { name: "fc2" type: "InnerProduct" bottom: "h" top: "p"
        param { lr_mult: FC2_LR decay_mult: 2 } param { lr_mult: 1 decay_mult: 1 }
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 }
                              bias_filler { type: "constant" value: -0.2 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "p" bottom: "y" top: "loss" }
"""
LR_MULT = [1.0, 2.0, None, 1.0]      # fc2 weight's lr_mult is set per test (FC2_LR)
DECAY_MULT = [0.5, 0.0, 2.0, 1.0]

rng = np.random.default_rng(5)
BATCHES = [(rng.normal(size=(6, 5)), rng.normal(size=(6, 3))) for _ in range(7)]


def gradients(w, x, y):
    """Loss and d loss / d (W1, b1, W2, b2) of sum((p - y)^2) / (2N), p = (x W1' + b1) W2' + b2."""
    w1, b1, w2, b2 = w
    h = x @ w1.T + b1
    p = h @ w2.T + b2
    n = x.shape[0]
    dp = (p - y) / n
    dh = dp @ w2
    return float(((p - y) ** 2).sum() / (2 * n)), [dh.T @ x, dh.sum(0), dp.T @ h, dp.sum(0)]


def reference_rate(sp, it):
    """The lr policies as caffe.proto documents them, in closed form."""
    b, g, pw = sp["base_lr"], sp.get("gamma", 0.0), sp.get("power", 0.0)
    policy = sp["lr_policy"]
    if policy == "fixed":
        return b
    if policy == "step":
        return b * g ** math.floor(it / sp["stepsize"])
    if policy == "exp":
        return b * g ** it
    if policy == "inv":
        return b * (1 + g * it) ** (-pw)
    if policy == "multistep":
        return b * g ** sum(1 for v in sp["stepvalue"] if it >= v)
    if policy == "poly":
        return b * (1 - it / sp["max_iter"]) ** pw
    if policy == "sigmoid":
        return b / (1 + math.exp(-g * (it - sp["stepsize"])))
    raise ValueError(policy)


def reference_run(sp, w0, lr_mult, iters):
    """Caffe's solver loop in float64 numpy; returns final weights, rates and displayed losses."""
    w = [np.array(a, np.float64) for a in w0]
    n = len(w)
    hist = [np.zeros_like(a) for a in w] + [np.zeros_like(a) for a in w]  # second set: AdaDelta / Adam
    iter_size, kind = sp.get("iter_size", 1), sp.get("type", "SGD")
    m, wd = sp.get("momentum", 0.0), sp.get("weight_decay", 0.0)
    delta = sp.get("delta", 1e-8)
    cursor, rates, losses = 0, [], []
    for it in range(iters):
        acc = [np.zeros_like(a) for a in w]
        loss = 0.0
        for _ in range(iter_size):
            x, y = BATCHES[cursor % len(BATCHES)]
            cursor += 1
            l, g = gradients(w, x, y)
            loss += l
            for i in range(n):
                if lr_mult[i] != 0:     # Caffe computes no diff for a blob with lr_mult 0
                    acc[i] += g[i]
        losses.append(loss / iter_size)
        rate = reference_rate(sp, it)
        rates.append(rate)
        clip = sp.get("clip_gradients", -1)
        norm = math.sqrt(sum(float((a ** 2).sum()) for a in acc))
        if clip >= 0 and norm > clip:
            acc = [a * clip / norm for a in acc]
        for i in range(n):
            d = acc[i] / iter_size
            reg = np.sign(w[i]) if sp.get("regularization_type") == "L1" else w[i]
            d = d + wd * DECAY_MULT[i] * reg
            lr = rate * lr_mult[i]
            h, h2 = hist[i], hist[n + i]
            if kind == "SGD":
                h[...] = m * h + lr * d
                step = h.copy()
            elif kind == "Nesterov":
                old = h.copy()
                h[...] = m * h + lr * d
                step = (1 + m) * h - m * old
            elif kind == "AdaGrad":
                h += d * d
                step = lr * d / (np.sqrt(h) + delta)
            elif kind == "RMSProp":
                r = sp["rms_decay"]
                h[...] = r * h + (1 - r) * d * d
                step = lr * d / (np.sqrt(h) + delta)
            elif kind == "AdaDelta":
                h[...] = m * h + (1 - m) * d * d
                upd = d * np.sqrt((h2 + delta) / (h + delta))
                h2[...] = m * h2 + (1 - m) * upd * upd
                step = lr * upd
            elif kind == "Adam":
                b2, t = sp["momentum2"], it + 1
                h[...] = m * h + (1 - m) * d
                h2[...] = b2 * h2 + (1 - b2) * d * d
                step = lr * math.sqrt(1 - b2 ** t) / (1 - m ** t) * h / (np.sqrt(h2) + delta)
            w[i] = w[i] - step
    return w, rates, losses


def solver_text(sp):
    fields = []
    for key, value in sp.items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            fields.append(f'{key}: "{v}"' if isinstance(v, str) else f"{key}: {v}")
    return "\n".join(fields)


def run_both(tmp_path, sp, iters=8, fc2_lr=1.0):
    sp = {"base_lr": 0.05, "lr_policy": "fixed", "max_iter": iters, "display": 1, "random_seed": 3, **sp}
    param = parse_text_proto(solver_text(sp), pb.SolverParameter)
    net = parse_text_proto(NET.replace("FC2_LR", str(fc2_lr)), pb.NetParameter)
    batches = iter([tuple(np.asarray(a, np.float32) for a in BATCHES[i % len(BATCHES)]) for i in range(1000)])
    solver = Solver(param, root=tmp_path, net_param=net, data_override=lambda: next(batches),
                    log_path=tmp_path / "train.log")
    w0 = [b.tensor.detach().numpy().copy() for b in solver.learnable]
    lr_mult = [LR_MULT[0], LR_MULT[1], fc2_lr, LR_MULT[3]]
    assert [b.lr_mult for b in solver.learnable] == lr_mult
    assert [b.decay_mult for b in solver.learnable] == DECAY_MULT
    solver.step(iters)
    ours = [b.tensor.detach().numpy().astype(np.float64) for b in solver.learnable]
    ref, rates, losses = reference_run(sp, w0, lr_mult, iters)
    records = [r for r in solver.records if r["phase"] == "train"]
    return solver, w0, ours, ref, rates, losses, records


def assert_close(ours, ref, tol=2e-5):
    for a, b in zip(ours, ref):
        scale = max(np.abs(b).max(), 1e-12)
        assert np.abs(a - b).max() / scale < tol


TYPES = {
    "SGD": {"momentum": 0.9},
    "Nesterov": {"momentum": 0.9},
    "AdaGrad": {"base_lr": 0.1},
    "RMSProp": {"rms_decay": 0.9, "base_lr": 0.01},
    "AdaDelta": {"momentum": 0.95, "delta": 1e-6, "base_lr": 1.0},
    "Adam": {"momentum": 0.9, "momentum2": 0.999, "base_lr": 0.01},
}


@pytest.mark.parametrize("kind", TYPES)
def test_solver_type_matches_caffe_formula(tmp_path, kind):
    sp = {"type": kind, "weight_decay": 0.01, "lr_policy": "step", "gamma": 0.5, "stepsize": 3, **TYPES[kind]}
    solver, w0, ours, ref, rates, losses, records = run_both(tmp_path, sp)
    assert_close(ours, ref)
    assert not all(np.allclose(a, b) for a, b in zip(ours, w0))     # it did train
    assert [r["raw_loss"] for r in records] == pytest.approx(losses, rel=1e-5)
    if kind in ("AdaDelta", "Adam"):
        assert len(solver.history) == 2 * len(solver.learnable)


POLICIES = {
    "fixed": {},
    "step": {"gamma": 0.5, "stepsize": 3},
    "exp": {"gamma": 0.9},
    "inv": {"gamma": 0.1, "power": 0.75},
    "multistep": {"gamma": 0.3, "stepvalue": [2, 3, 6]},
    "poly": {"power": 2.0},
    "sigmoid": {"gamma": -0.5, "stepsize": 4},
}


@pytest.mark.parametrize("policy", POLICIES)
def test_lr_policy_matches_caffe_formula(tmp_path, policy):
    sp = {"type": "SGD", "momentum": 0.9, "lr_policy": policy, **POLICIES[policy]}
    _, _, ours, ref, rates, _, records = run_both(tmp_path, sp, iters=8)
    assert [r["lr"] for r in records] == pytest.approx(rates, rel=1e-6)
    assert_close(ours, ref)


def test_multistep_advances_one_step_per_call():
    """Caffe's multistep increments current_step at most once per GetLearningRate call."""
    param = parse_text_proto('lr_policy: "multistep" base_lr: 1 gamma: 0.5 stepvalue: 2 stepvalue: 3',
                             pb.SolverParameter)
    assert learning_rate(param, 10, 0) == (0.5, 1)       # a restored run catches up one call at a time
    assert learning_rate(param, 10, 1) == (0.25, 2)


def test_iter_size_accumulates_and_averages(tmp_path):
    sp = {"type": "SGD", "momentum": 0.9, "iter_size": 3, "weight_decay": 0.002}
    _, _, ours, ref, _, losses, records = run_both(tmp_path, sp, iters=5)
    assert_close(ours, ref)
    assert [r["raw_loss"] for r in records] == pytest.approx(losses, rel=1e-5)


def test_clip_gradients_scales_global_norm(tmp_path):
    sp = {"type": "SGD", "momentum": 0.9, "clip_gradients": 0.05, "iter_size": 2, "weight_decay": 0.01}
    _, w0, ours, ref, _, _, _ = run_both(tmp_path, sp, iters=6)
    assert_close(ours, ref)
    unclipped = reference_run({"base_lr": 0.05, "lr_policy": "fixed", **sp, "clip_gradients": -1},
                              w0, [1.0, 2.0, 1.0, 1.0], 6)[0]
    assert not all(np.allclose(a, b) for a, b in zip(ref, unclipped))   # the clip did act


def test_lr_mult_zero_freezes_blob(tmp_path):
    sp = {"type": "SGD", "momentum": 0.9, "weight_decay": 0.05, "clip_gradients": 0.5}
    _, w0, ours, ref, _, _, _ = run_both(tmp_path, sp, fc2_lr=0.0)
    assert np.array_equal(ours[2], w0[2])        # frozen despite decay_mult 2
    assert_close(ours, ref)


def test_l1_regularization(tmp_path):
    sp = {"type": "SGD", "momentum": 0.5, "weight_decay": 0.05, "regularization_type": "L1"}
    _, _, ours, ref, _, _, _ = run_both(tmp_path, sp)
    assert_close(ours, ref)


def test_smoothed_loss_is_mean_of_last_average_loss(tmp_path):
    sp = {"type": "SGD", "momentum": 0.9, "average_loss": 3}
    *_, losses, records = run_both(tmp_path, sp, iters=7)
    for k, r in enumerate(records):
        assert r["loss"] == pytest.approx(np.mean(losses[max(0, k - 2):k + 1]), rel=1e-5)


def test_embedded_test_net_sees_trained_weights(tmp_path):
    """train_net_param / test_net_param from the SolverParameter; the test net shares the train net's blobs."""
    param = parse_text_proto(solver_text({"base_lr": 0.05, "lr_policy": "fixed", "momentum": 0.9,
                                          "max_iter": 10, "test_iter": 3}), pb.SolverParameter)
    param.train_net_param.CopyFrom(parse_text_proto(NET.replace("FC2_LR", "1"), pb.NetParameter))
    test_net = NET.replace("FC2_LR", "1").replace(
        'type: "Input" top: "x" top: "y"\n        input_param { shape { dim: 6 dim: 5 } shape { dim: 6 dim: 3 } }',
        'type: "DummyData" top: "x" top: "y" dummy_data_param { shape { dim: 6 dim: 5 } shape { dim: 6 dim: 3 }\n'
        '        data_filler { type: "constant" value: 1 } data_filler { type: "constant" value: 0.5 } }')
    param.test_net_param.add().CopyFrom(parse_text_proto(test_net, pb.NetParameter))
    batches = iter([tuple(np.asarray(a, np.float32) for a in BATCHES[i % len(BATCHES)]) for i in range(100)])
    solver = Solver(param, root=tmp_path, data_override=lambda: next(batches), log_path=tmp_path / "log")
    assert len(solver.test_nets) == 1
    solver.step(2)
    [scores] = solver.test()
    w = [b.tensor.detach().numpy().astype(np.float64) for b in solver.learnable]
    expected, _ = gradients(w, np.ones((6, 5)), np.full((6, 3), 0.5))
    assert scores["loss"] == pytest.approx(expected, rel=1e-6)
