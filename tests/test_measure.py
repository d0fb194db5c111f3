"""Fitters and metrics on phi constructed so the right answer is known; metrics against hand computations."""
import math

import numpy as np
import pytest
import torch

from replicate.measure import fitters, metrics
from replicate.measure.fitters import AffineMap


def permuted_phi(n: int = 400, d: int = 12, classes: int = 4, seed: int = 0):
    """phi(x) sparse non-negative with class structure; phi(gx) = P phi(x) for a fixed permutation P."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    centres = 0.5 + 2 * torch.rand(classes, d, generator=gen)   # every neuron fires: P is identifiable
    y = torch.relu(centres[labels] + 0.3 * torch.randn(n, d, generator=gen))
    perm = torch.randperm(d, generator=gen)
    x = y[:, perm]                                  # x = P y, so the right map is P^T (P^-1)
    w8 = centres.clone()                            # a classifier that works on phi(x)
    b8 = -(centres ** 2).sum(1) / 2
    return x, y, labels, perm, w8, b8


@pytest.mark.parametrize("name", ["fast", "paper", "authors"])
def test_fitters_recover_a_permutation_and_equivariance_equals_untransformed_accuracy(name):
    x, y, labels, perm, w8, b8 = permuted_phi()
    fit, test = slice(0, 300), slice(300, 400)
    kwargs = {"epochs": 30} if name == "paper" else {}
    mapping, _ = fitters.get_fitter(name)(x[fit], y[fit], **kwargs)
    assert fitters.loss(mapping, x[test], y[test]) < 0.02 * float((y[test] ** 2).sum(1).mean())
    inverse = torch.zeros(len(perm), len(perm))
    inverse[torch.arange(len(perm)), torch.argsort(perm)] = 1   # (P^-1 x)_i = x_{argsort(perm)_i}
    assert torch.allclose(inverse @ x[0], y[0])
    assert (mapping.weight.argmax(1) == torch.argsort(perm)).all()
    untransformed = metrics.accuracy(y[test], labels[test], w8, b8)
    assert untransformed > 0.9
    assert metrics.accuracy(mapping(x[test]), labels[test], w8, b8) == untransformed
    assert metrics.accuracy(x[test], labels[test], w8, b8) < untransformed   # not invariant


def test_invariance_equals_equivariance_when_phi_is_already_invariant():
    x, y, labels, _, w8, b8 = permuted_phi()
    mapping, _ = fitters.fit_fast(y[:300], y[:300])
    test = slice(300, 400)
    equi = metrics.scores(mapping(y[test]), y[test], labels[test], w8, b8)
    inv = metrics.scores(y[test], y[test], labels[test], w8, b8)
    assert equi["accuracy"] == inv["accuracy"]
    assert equi["l2_authors"] == pytest.approx(inv["l2_authors"], abs=1e-3)
    assert inv["l2_authors"] == 0 and inv["l2_per_neuron"] == 0


def test_fast_fit_is_no_worse_than_the_identity_on_held_out_data():
    gen = torch.Generator().manual_seed(3)
    y = torch.relu(torch.randn(200, 20, generator=gen))
    x = torch.relu(y + 0.5 * torch.randn(200, 20, generator=gen))   # noise only: no structure to learn
    mapping, record = fitters.fit_fast(x[:100], y[:100])
    identity = AffineMap.identity(20)
    assert fitters.loss(mapping, x[100:], y[100:]) <= fitters.loss(identity, x[100:], y[100:])
    assert record["ridge_relative"] in fitters.RIDGE_GRID


def test_accuracy_counts_ties_as_correct_like_caffe():
    w8 = torch.eye(3)
    b8 = torch.zeros(3)
    r = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0], [3.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    labels = torch.tensor([0, 2, 0, 1])
    # sample 0: tie between classes 0 and 1 -> correct; 1: class 1 beats 2 -> wrong; 2: right; 3: wrong
    assert metrics.accuracy(r, labels, w8, b8) == 0.5


def test_l2_normalisations_match_hand_computation():
    r = torch.tensor([[3.0, 0.0], [0.0, 4.0], [0.0, 0.0]])
    r_mapped = torch.tensor([[3.0, 1.0], [0.0, 2.0], [1.0, 0.0]])
    # authors: mean ||r' - r|| / mean ||r|| = ((1 + 2 + 1) / 3) / ((3 + 4 + 0) / 3) = 4 / 7
    assert metrics.l2(r_mapped, r, "authors") == pytest.approx(4 / 7)
    # per-neuron: second moments 9/3 = 3 and 16/3, D = diag(1/sqrt 3, sqrt 3 / 4); the same ratio of means:
    # scaled diffs d1, 2 d1, d0 over scaled norms 3 d0, 4 d1, 0
    d0, d1 = 1 / math.sqrt(3), math.sqrt(3) / 4
    assert metrics.l2(r_mapped, r, "per-neuron") == pytest.approx((3 * d1 + d0) / (3 * d0 + 4 * d1))


def test_l2_of_a_dead_neuron_is_ignored():
    r = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    assert metrics.l2(r + torch.tensor([0.0, 5.0]), r, "per-neuron") == 0


def test_unknown_names_list_the_valid_ones():
    from convert.errors import UserError
    with pytest.raises(UserError, match="fast, paper, authors"):
        fitters.get_fitter("exact")
    with pytest.raises(UserError, match="per-neuron, authors"):
        metrics.l2(torch.zeros(1, 1), torch.zeros(1, 1), "cosine")


def test_fast_fitter_matches_the_closed_form_ridge_without_sgd():
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(50, 4, generator=gen, dtype=torch.float64)
    y = x @ torch.rand(4, 4, generator=gen, dtype=torch.float64) + 1.0   # positive: the ReLU is inactive
    mapping, record = fitters.fit_fast(x, y, sgd_epochs=0)
    xc, yc = (x - x.mean(0)).numpy(), (y - y.mean(0)).numpy()
    lam = record["ridge_lambda"]
    expected = np.linalg.solve(xc.T @ xc + lam * np.eye(4), xc.T @ yc + lam * np.eye(4)).T
    assert np.allclose(mapping.weight.numpy(), expected)
    assert np.allclose(mapping.bias.numpy(), (y.mean(0) - x.mean(0) @ torch.from_numpy(expected).T).numpy())
