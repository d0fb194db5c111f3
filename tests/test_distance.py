"""Representation distance (Eqs. 4, 9): distance maps on phi built so the answer is known, the matrix analyses
against hand computations, the claim checkers, the store-level matrix (on synthetic phi) and bad input."""
from collections import namedtuple
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from convert.errors import UserError
from replicate import claims, zoo
from replicate.claims import Evidence
from replicate.config import get_scale
from replicate.measure import distance, fitters, pairs
from replicate.measure.distance import DistanceMatrix
from replicate.store import Store

RVL = "rvl-cdip"


def sparse_phi(n: int = 500, d: int = 10, seed: int = 0) -> torch.Tensor:
    """fc7-like: non-negative, sparse, every neuron firing on some samples."""
    gen = torch.Generator().manual_seed(seed)
    return torch.relu(0.5 + torch.randn(n, d, generator=gen))


def split(*phis: torch.Tensor, fit: int = 350) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    return [p[:fit] for p in phis], [p[fit:] for p in phis]


# --------------------------------------------------------------------------------------- distance maps
def test_a_permutation_is_recovered_and_its_one_way_distance_is_zero():
    source = sparse_phi()
    perm = torch.randperm(source.shape[1], generator=torch.Generator().manual_seed(1))
    target = source[:, perm]                                   # target_k = source_perm[k]
    (mapping, _), = distance.fit_targets(source[:350], [target[:350]])
    assert (mapping.weight.argmax(1) == perm).all()
    one_way, _ = distance.one_way_matrices(*split(source, target))
    assert one_way["authors"][0, 1] < 0.01 and one_way["per-neuron"][0, 1] < 0.01


def test_a_known_affine_map_with_non_negative_outputs_is_recovered():
    source = sparse_phi()
    gen = torch.Generator().manual_seed(2)
    weight, bias = torch.rand(8, 10, generator=gen), 0.1 + torch.rand(8, generator=gen)
    target = source @ weight.T + bias                          # positive: the ReLU never cuts
    (mapping, _), = distance.fit_targets(source[:350], [target[:350]])
    assert torch.allclose(mapping.weight, weight, atol=2e-3) and torch.allclose(mapping.bias, bias, atol=2e-3)
    assert distance.one_way(mapping, source[350:], target[350:])["l2_authors"] < 1e-3


def test_a_sub_representation_is_easy_to_predict_but_does_not_predict_the_whole():
    whole = sparse_phi(d=12)
    part = whole * (torch.arange(12) < 6)                      # half the neurons of `whole`, the rest silent
    one_way, _ = distance.one_way_matrices(*split(whole, part))
    for norm in ("authors", "per-neuron"):
        assert one_way[norm][0, 1] < 0.01                      # part from whole
        assert one_way[norm][1, 0] > 0.3                       # whole from part: half of it is unpredictable
    m = DistanceMatrix.build(RVL, zoo.nets(RVL)[:2], one_way)
    assert m.D_prime["authors"][0, 1] == pytest.approx(one_way["authors"][1, 0] - one_way["authors"][0, 1])


def test_the_batched_fit_equals_fitting_each_pair():
    source = sparse_phi(n=600, d=16)
    gen = torch.Generator().manual_seed(3)
    targets = [torch.relu(source @ torch.randn(16, 16, generator=gen) / 4 + 0.1) for _ in range(5)] + [source]
    batched = distance.fit_targets(source, targets, seed=7, chunk=2)
    for y, (m, record) in zip(targets, batched):
        alone, alone_record = fitters.fit_fast(source, y, residual=False, seed=7)
        assert (m.weight - alone.weight).abs().max() <= 1e-5 and (m.bias - alone.bias).abs().max() <= 1e-5
        assert record["ridge_relative"] == alone_record["ridge_relative"] and not record["residual"]


def test_distance_maps_start_at_zero_and_decay_toward_zero():
    x, y = sparse_phi(n=60, d=5), sparse_phi(n=60, d=4, seed=9)
    authors, _ = fitters.fit_authors(x, y, residual=False, max_epochs=0)    # the initial draw, N(0, 0.001^2)
    assert authors.weight.shape == (4, 5) and authors.weight.abs().max() < 0.01
    # from W = 0 every pre-activation would be 0, where Caffe's ReLU passes no gradient: the paper fitter
    # starts distance maps where the authors' code does, and then learns
    start, _ = fitters.fit_paper(x, y, residual=False, epochs=0)
    assert start.weight.abs().max() < 0.01 and start.weight.any() and not start.bias.any()
    paper, _ = fitters.fit_paper(x, y, residual=False, epochs=3)
    assert fitters.loss(paper, x, y) < fitters.loss(start, x, y)
    fast, record = fitters.fit_fast(x, y, residual=False, sgd_epochs=0)
    xc, yc = (x - x.mean(0)).double(), (y - y.mean(0)).double()
    expected = torch.linalg.solve(xc.T @ xc + record["ridge_lambda"] * torch.eye(5, dtype=torch.float64), xc.T @ yc)
    assert torch.allclose(fast.weight.double(), expected.T, atol=1e-4)     # ridge toward 0, not toward I


def test_gradient_clipping_scales_the_whole_gradient_like_caffe():
    x, y = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5, 0.0]])
    err = x[0] - y[0]                                          # W + I = I, b = 0 at start: the residual
    norm = float(err.norm() * torch.sqrt(x[0].dot(x[0]) + 1))  # ||(outer(err, x), err)||
    for clip in (0.5 * norm, 2 * norm):
        m, record = fitters.fit_paper(x, y, epochs=1, lr=1.0, momentum=0.0, decay=0.0, clip_gradients=clip)
        scale = min(1.0, clip / norm)
        assert torch.allclose(m.weight, torch.eye(2) - scale * torch.outer(err, x[0]))
        assert torch.allclose(m.bias, -scale * err) and record["clip_gradients"] == clip
    unclipped, _ = fitters.fit_authors(sparse_phi(n=50, d=4), sparse_phi(n=50, d=4, seed=4), max_epochs=1)
    huge, _ = fitters.fit_authors(sparse_phi(n=50, d=4), sparse_phi(n=50, d=4, seed=4), max_epochs=1,
                                  clip_gradients=1e30)
    assert torch.equal(unclipped.weight, huge.weight)
    assert fitters.AUTHORS_DISTANCE_CLIP == 5.0


# ------------------------------------------------------------------------------------------- the matrix
def test_d_is_the_symmetric_sum_or_mean_and_d_prime_the_absolute_difference():
    one_way = {"authors": np.array([[0, 1.0, 2.0], [3.0, 0, 4.0], [0.5, 6.0, 9.0]]),
               "per-neuron": np.array([[0, 2.0, 1.0], [1.0, 0, 1.0], [1.0, 1.0, 0]])}
    nets = zoo.nets(RVL)[:3]
    m = DistanceMatrix.build(RVL, nets, one_way, cka=np.eye(3))
    D = m.D["authors"]
    assert (D == D.T).all() and not np.diag(D).any()           # the diagonal (9.0) is a self pair: 0
    assert D[0, 1] == 4.0 and D[0, 2] == 2.5 and m.D_prime["authors"][0, 1] == 2.0
    assert m.D_prime["authors"][1, 2] == 2.0 and (m.D_prime["authors"] == m.D_prime["authors"].T).all()
    assert DistanceMatrix.build(RVL, nets, one_way, combine="mean").D["authors"][0, 1] == 2.0
    assert m.config["combine"] == "sum" and m.matrix() is m.D["authors"]
    assert m.matrix("per-neuron", "D_prime")[0, 1] == 1.0


def test_linear_cka_matches_its_definition_and_its_invariances():
    x = sparse_phi(n=200, d=6).double()
    rot = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64))[0]
    assert distance.linear_cka(x, x @ rot * 3 + 1) == pytest.approx(1.0)   # rotation, scale, shift
    y = sparse_phi(n=200, d=4, seed=5).double()
    xc, yc = x - x.mean(0), y - y.mean(0)
    expected = (yc.T @ xc).norm() ** 2 / ((xc.T @ xc).norm() * (yc.T @ yc).norm())
    assert distance.linear_cka(x, y) == pytest.approx(float(expected))
    cka = distance.cka_matrix([x, y, x * 2])
    assert cka[0, 2] == pytest.approx(1.0) and cka[0, 1] == pytest.approx(float(expected)) and (cka == cka.T).all()


# ------------------------------------------------------------------------------------ matrix analyses
HAND = np.array([[0, 1, 2, 5, 3],
                 [1, 0, 4, 2, 6],
                 [2, 4, 0, 4, 7],
                 [5, 2, 4, 0, 8],
                 [3, 6, 7, 8, 0]], dtype=float)
HAND_FAMILIES = ["a", "a", "b", "b", "c"]


def test_knn_same_family_matches_hand_counts_with_ties_to_the_lower_index():
    # same-family pairs (0,1) (1,0) (2,3) (3,2) have neighbour ranks 1, 1, 3 (net 2 sees 1 and 3 at 4: 1 first), 2
    assert [pairs.knn_same_family(HAND, HAND_FAMILIES, k) for k in (1, 2, 3, 4)] == [0.5, 0.75, 1.0, 1.0]
    ks, fractions, chance = pairs.knn_curve(HAND, HAND_FAMILIES)
    assert list(ks) == [1, 2, 3, 4] and list(fractions) == [0.5, 0.75, 1.0, 1.0] and list(chance) == [0.25, 0.5, 0.75, 1]
    with pytest.raises(UserError, match="k = 5"):
        pairs.knn_same_family(HAND, HAND_FAMILIES, 5)


def test_family_means_and_uniqueness_match_hand_computation():
    means = pairs.family_means(HAND, HAND_FAMILIES, ["a", "b", "c", "absent"])
    expected = np.array([[1, 13 / 4, 4.5, np.nan], [13 / 4, 4, 7.5, np.nan], [4.5, 7.5, np.nan, np.nan],
                         [np.nan] * 4])
    np.testing.assert_allclose(means, expected)
    assert pairs.uniqueness(HAND, HAND_FAMILIES) == pytest.approx({"c": 6.0, "b": 28 / 6, "a": 22 / 6})
    assert list(pairs.uniqueness(HAND, HAND_FAMILIES)) == ["c", "b", "a"]
    assert pairs.cluster_contrast(HAND, HAND_FAMILIES, ["a"]) == pytest.approx((1.0, 22 / 6))


def test_triangle_violations_on_hand_matrices():
    # only (0, 1, 2) and (2, 1, 0) of the 6 ordered triples: 3 > 1 + 1
    assert pairs.triangle_violations(np.array([[0, 1, 3], [1, 0, 1], [3, 1, 0]])) == pytest.approx(1 / 3)
    points = np.random.default_rng(0).normal(size=(6, 2))
    euclidean = np.linalg.norm(points[:, None] - points[None], axis=-1)
    assert pairs.triangle_violations(euclidean) == 0.0
    with pytest.raises(UserError, match="at least 3 nets"):
        pairs.triangle_violations(np.zeros((2, 2)))


def pairs_of_points() -> np.ndarray:
    """Distances of 36 points: 18 twins 1 apart on a 3 x 6 grid of spacing 20. Embeddings keep the twins together."""
    centres = 20.0 * np.array([(i, j) for i in range(3) for j in range(6)])
    points = np.repeat(centres, 2, axis=0) + np.tile([[0, 0], [1, 0]], (18, 1))
    return np.linalg.norm(points[:, None] - points[None], axis=-1)


def test_tsne_agreement_is_high_for_clear_pairs_and_low_for_structureless_distances():
    clear = pairs.tsne(pairs_of_points(), [0, 1, 2])
    assert clear.nn_agreement > 0.8 and clear.fidelity > 0.5 and clear.points[0].shape == (36, 2)
    flat = np.ones((36, 36)) - np.eye(36)                       # every net equally far from every other
    assert pairs.tsne(flat, [0, 1, 2]).nn_agreement < 0.3
    assert pairs.perplexity_for(36) == 10.0


# ------------------------------------------------------------------------------------------- checkers
NETS = zoo.nets(RVL)


def family_matrix(near: dict[frozenset, float], default: float = 3.0, within: float = 1.0) -> DistanceMatrix:
    """Every RVL-CDIP net; D = `within` inside a family, near[{f, g}] between families f and g, else `default`.
    A small index-dependent jitter keeps distances distinct (and breaks the triangle inequality nowhere)."""
    fams = [n.family for n in NETS]
    n = len(NETS)
    D = np.array([[0.0 if i == j else within if fams[i] == fams[j] else near.get(frozenset((fams[i], fams[j])), default)
                   for j in range(n)] for i in range(n)])
    D += 0.01 * (np.add.outer(np.arange(n), np.arange(n)) / n) * (D > 0)
    return DistanceMatrix.build(RVL, NETS, {"authors": D / 2, "per-neuron": D / 2})


def run_checker(kind: str, check: dict, matrix: DistanceMatrix | None):
    return claims.CHECKERS[kind]({"kind": kind, **check}, Evidence(distances={} if matrix is None else {RVL: matrix}))


def test_knn_same_family_checker():
    check = {"dataset": RVL, "k": 5, "low": 0.7}
    assert run_checker("knn_same_family", check, family_matrix({})).holds
    anti = family_matrix({}, default=1.0, within=3.0)            # same-family nets are the farthest
    outcome = run_checker("knn_same_family", check, anti)
    assert not outcome.holds and outcome.numbers["same-family pairs within k"] == 0.0
    assert run_checker("knn_same_family", check, None) is None


def test_family_cluster_checker():
    check = {"datasets": [RVL, "ilsvrc"], "families": ["rotation", "shear", "perspective"]}
    rigid = {frozenset(p): 1.5 for p in (("rotation", "shear"), ("rotation", "perspective"), ("shear", "perspective"))}
    holds = run_checker("family_cluster", check, family_matrix(rigid))
    assert holds.holds and list(holds.numbers["mean D (rotation+shear+perspective)"]) == [RVL]
    apart = {frozenset(p): 5.0 for p in rigid}
    assert not run_checker("family_cluster", check, family_matrix(apart)).holds


def test_most_unique_family_checker():
    crop_far = {frozenset(("crop", f)): 6.0 for f in zoo.FAMILIES if f != "crop"}
    check = {"dataset": RVL, "family": "crop", "rank": 1}
    outcome = run_checker("most_unique_family", check, family_matrix(crop_far))
    assert outcome.holds and outcome.numbers["position"] == 1 and "baseline" not in outcome.numbers[
        "mean D to other families' nets"]
    blur_far = {frozenset(("blur", f)): 6.0 for f in zoo.FAMILIES if f != "blur"}
    assert not run_checker("most_unique_family", check, family_matrix(blur_far)).holds


def test_typical_distance_checker():
    check = {"values": {RVL: [0.25, 1.0], "ilsvrc": [0.5, 2.0]}}
    assert run_checker("typical_distance", check, family_matrix({}, default=0.6, within=0.5)).holds   # median ~0.6
    assert not run_checker("typical_distance", check, family_matrix({})).holds                      # median ~3
    assert run_checker("typical_distance", {"values": {"ilsvrc": [0.5, 2.0]}}, family_matrix({})) is None


def test_triangle_inequality_checker():
    check = {"datasets": [RVL, "ilsvrc"]}
    assert not run_checker("triangle_inequality_violated", check, family_matrix({})).holds   # 1-3 apart: a metric
    far = family_matrix({frozenset(("crop", "blur")): 10.0})        # crop -> baseline -> blur is 6 < 10
    outcome = run_checker("triangle_inequality_violated", check, far)
    assert outcome.holds and outcome.numbers["fraction of triples violating it"][RVL] > 0


def test_tsne_unstable_checker():
    check = {"datasets": [RVL], "seeds": 3, "max_agreement": 0.5}
    clear = pairs_of_points()
    stable = DistanceMatrix.build(RVL, NETS, {"authors": clear / 2, "per-neuron": clear / 2})
    assert not run_checker("tsne_unstable", check, stable).holds
    assert run_checker("tsne_unstable", check, family_matrix({}, default=1.0)).holds   # everything equidistant


# --------------------------------------------------------------------------------- store and bad input
Images = namedtuple("Images", "source root eval_split")


@dataclass(frozen=True)
class FakeSource:
    """What distance_matrix reads of a replicate.measure.phi.Source, without a trained net."""
    store: Store
    net: zoo.Net
    scale: object = get_scale("smoke")
    dataset: str = RVL
    images: Images = Images("synthetic", "/nowhere", "test")
    dropout: str = "caffe"
    device: str = "cpu"

    def key(self) -> dict:
        return {"train_job": f"train-{self.net.id}"}


@pytest.fixture
def synthetic(monkeypatch, tmp_path):
    """Three sources whose phi are synthetic (net 2 = a permutation of net 0); counts the targets fitted."""
    base = sparse_phi(n=300, d=8)
    phis = {"baseline_1": base, "crop_240": sparse_phi(n=300, d=8, seed=3), "blur_1.5": base[:, torch.randperm(8)]}
    fitted, fit_many = [], fitters.fit_fast_many

    def fake_phi(source, view, split, limit=None):
        rows = slice(0, 200) if split == "val" else slice(200, 300)
        return phis[source.net.id][rows].numpy(), np.zeros(100, dtype=np.int64)

    def counting(x, ys, **kwargs):
        fitted.append(len(ys))
        return fit_many(x, ys, **kwargs)

    monkeypatch.setattr(distance, "phi", fake_phi)
    monkeypatch.setattr(fitters, "fit_fast_many", counting)
    store = Store(tmp_path / "store")
    sources = [FakeSource(store, zoo.get(i, RVL)) for i in phis]
    return sources, phis, fitted


def test_the_store_fits_each_source_once_and_a_second_run_fits_nothing(synthetic):
    sources, phis, fitted = synthetic
    first = distance.distance_matrix(sources, progress=False)
    assert fitted == [2, 2, 2]                                  # one batched step per source
    fit_phis, report_phis = [p[:200] for p in phis.values()], [p[200:] for p in phis.values()]
    one_way, _ = distance.one_way_matrices(fit_phis, report_phis)
    fitted[:] = [2, 2, 2]                                       # not counting the store-free fit just made
    np.testing.assert_allclose(first.one_way["authors"], one_way["authors"], rtol=1e-6)
    assert first.one_way["authors"][0, 2] < 0.01 and first.config["fitter"] == "fast"
    assert [n.id for n in first.nets] == list(phis) and first.cka[0, 2] == pytest.approx(1.0)
    again = distance.distance_matrix(sources, combine="mean", progress=False)
    assert fitted == [2, 2, 2]                                  # everything read from the store
    np.testing.assert_array_equal(again.D["authors"], first.D["authors"] / 2)
    # a run killed after the pair crop_240 -> baseline_1 began: only that pair is fitted again
    (next((sources[0].store.root / "distance-smoke-rvl-cdip").glob("crop_240--baseline_1-*")) / "result.json").unlink()
    resumed = distance.distance_matrix(sources, progress=False)
    assert fitted == [2, 2, 2, 1]
    np.testing.assert_array_equal(resumed.D["authors"], first.D["authors"])


def test_pair_by_pair_fitters_and_clipping_are_separate_store_jobs(synthetic):
    sources, _, fitted = synthetic
    clipped = distance.distance_matrix(sources[:2], fitter="authors", clip=fitters.AUTHORS_DISTANCE_CLIP, progress=False)
    assert fitted == [] and clipped.config["clip_gradients"] == 5.0
    assert len(list((sources[0].store.root / "distance-smoke-rvl-cdip").iterdir())) == 2
    distance.distance_matrix(sources[:2], fitter="authors", progress=False)
    assert len(list((sources[0].store.root / "distance-smoke-rvl-cdip").iterdir())) == 4


def test_bad_input_is_a_user_error(synthetic):
    sources, _, _ = synthetic
    with pytest.raises(UserError, match="at least two networks; got 1"):
        distance.distance_matrix(sources[:1])
    with pytest.raises(UserError, match="fast, paper, authors"):
        distance.distance_matrix(sources, fitter="exact")
    with pytest.raises(UserError, match="combine"):
        distance.distance_matrix(sources, combine="max")
    with pytest.raises(UserError, match="fast fitter has no gradient"):
        distance.distance_matrix(sources, clip=5.0)
    with pytest.raises(UserError, match="appears twice"):
        distance.distance_matrix([sources[0], sources[0]])
    with pytest.raises(UserError, match="at least two networks"):
        distance.one_way_matrices([torch.zeros(3, 2)], [torch.zeros(3, 2)])
    with pytest.raises(UserError, match="same number of samples"):
        distance.fit_targets(torch.zeros(5, 2), [torch.zeros(4, 2)])
    with pytest.raises(UserError, match="square"):
        pairs.knn_same_family(np.zeros((2, 3)), ["a", "b"], 1)
