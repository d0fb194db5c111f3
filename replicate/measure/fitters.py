"""Equivariance maps M_g(r) = ReLU((W + I) r + b) (Eq. 8) and distance maps E(r) = ReLU(W r + b) (Section 5.3).

Every fitter minimises the paper's loss ||M(input) - target||^2 (as Caffe's EuclideanLoss with batch 1: half
the squared norm per sample, whose gradient is the residual) and returns an AffineMap holding the full weight
and b. `residual=True` (default) fits Eq. 8's map from phi(g x) to phi(x): the weight is W + I, W starts at
(or is ridged toward) 0, so the map starts at the identity, and weight decay acts on W. `residual=False` fits
a distance map E from one net's phi to another's: the weight is W itself, starting at (or ridged toward) 0,
and the two phis may differ in size. (`paper` then starts from W ~ N(0, 0.001^2), the authors' start: from
W = 0 and b = 0 every pre-activation is 0, where Caffe's ReLU passes no gradient, so E would never move.)
Invariance is the identity map (AffineMap.identity).

  paper    Section 5.2: fully online SGD (batch 1), 10 epochs, static lr 0.001, momentum 0.9, weight decay
           1e-5 (Caffe's update: v = m v + lr (grad + wd theta); theta -= v; decay on W and b, Caffe's
           default decay_mult), W = 0 and b = 0 at start (distance maps: W ~ N(0, 0.001^2)); samples in a
           fresh seeded order every epoch.
  authors  the authors' code head (docs/protocol.md): W ~ N(0, 0.001^2), b = 0, batch 1, lr 0.1 divided by 10
           after two validations without improvement, validation twice per epoch, at most 40,000 images,
           momentum 0.9, weight decay 1e-5 (the paper's; the head's is not pinned down). Their code
           validated on the report split; here 10% of the fit set is held out instead (no test leakage).
           Every lr cut (and a non-finite loss, which cuts at once) restarts from the best validated
           weights with zero momentum; training stops at the fourth cut or after 20 epochs (their
           default) and returns the best validated weights.
           Both take `clip_gradients` (Caffe's solver field; off by default, the authors' distance code used
           AUTHORS_DISTANCE_CLIP): when the L2 norm of the loss gradient of W and b together exceeds it, the
           gradient is scaled to that norm, before weight decay is added (Caffe's ClipGradients runs first).
  fast     ours: closed-form ridge regression toward the identity (residual) or 0, W' = argmin ||Y - X W'^T - b||^2
           + lam ||W' - P||^2 (P = I or 0; b unpenalised, via centring), lam chosen on a 20% hold-out (at most
           2,000 samples scored) from a grid relative to the mean eigenvalue of the centred Gram matrix (one
           eigendecomposition serves every lam; the largest lam is nearly P plus a shift, so the choice can
           only do better than that on the hold-out), refitted on all samples (the Gram sums of the two parts,
           one pass over the data); then 2 epochs of minibatch SGD with momentum through the ReLU on the same
           ridge objective, step 0.1 / (largest Gram eigenvalue per sample), each epoch over at most 4,096
           random samples (the ridge solution is already close; at d = 4096 an SGD pass over 40,000 samples
           would cost more than the closed form). Vectorised torch, any device. fit_fast_many fits one input
           against several targets with the same random draws: the input's Gram, eigendecomposition and
           factorisations are computed once, the targets' systems and SGD passes batched (fit_fast is its
           one-target case).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from convert.errors import UserError

AUTHORS_DISTANCE_CLIP = 5.0   # docs/protocol.md: the authors' distance-map code clips gradients at 5
AUTHORS_INIT_STD = 0.001      # the authors' code starts W ~ N(0, 0.001^2)


@dataclass
class AffineMap:
    """M(r) = ReLU(weight r + bias); weight = W + I for an equivariance map, W for a distance map."""
    weight: torch.Tensor
    bias: torch.Tensor

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        return torch.relu(r @ self.weight.T + self.bias)

    @staticmethod
    def identity(dim: int, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> "AffineMap":
        return AffineMap(torch.eye(dim, dtype=dtype, device=device), torch.zeros(dim, dtype=dtype, device=device))


def loss(m: AffineMap, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over samples of ||M(x_i) - y_i||^2 (the paper's loss, as the number reported)."""
    return squared_error(m(x), y)


def squared_error(mapped: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over samples of ||mapped_i - y_i||^2, for maps already applied."""
    return float(((mapped - y) ** 2).sum(1).mean())


def _check_dims(x: torch.Tensor, ys: Sequence[torch.Tensor], residual: bool) -> None:
    for y in ys:
        if y.shape[0] != x.shape[0] or (residual and y.shape[1] != x.shape[1]):
            raise UserError(f"map inputs {tuple(x.shape)} and targets {tuple(y.shape)}: expected the same number "
                            f"of samples{' and the same dimension (a residual map)' if residual else ''}")


_PRIORS: dict[tuple, torch.Tensor] = {}


def _prior(rows: int, cols: int, residual: bool, like: torch.Tensor) -> torch.Tensor:
    """What the weight starts at and decays toward: I (residual) or 0 (cached: the online step must not allocate it)."""
    key = (rows, cols, residual, like.dtype, like.device)
    if key not in _PRIORS:
        make = torch.eye if residual else torch.zeros
        _PRIORS[key] = make(rows, cols, dtype=like.dtype, device=like.device)
    return _PRIORS[key]


# ------------------------------------------------------------------------------------------- fast
RIDGE_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)   # lam / mean Gram eigenvalue; 10 is nearly the prior


def _mean_eigenvalue(gram: torch.Tensor) -> float:
    return max(float(torch.trace(gram)) / gram.shape[0], 1e-12)


def _eigh(gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.linalg.eigh on one thread: MKL's threaded eigensolver stalls when the cores are shared
    (measured: 23 s on 2 busy cores vs 0.2 s on one, d = 1024)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return torch.linalg.eigh(gram)
    finally:
        torch.set_num_threads(threads)


def _centred_gram(sxx: torch.Tensor, sx: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centred Gram matrix and mean of the input, from its raw sums X^T X, sum x and the count."""
    mx = sx / n
    return sxx - n * torch.outer(mx, mx), mx


def _centred_cross(sxy: torch.Tensor, sy: torch.Tensor, n: torch.Tensor,
                   mx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centred cross products [T, d, d_t] and target means [T, d_t], from raw sums X^T Y and sum y."""
    my = sy / n
    return sxy - n * (mx[:, None] * my[:, None, :]), my


class _Input:
    """What every target fitted from one input shares: split, Gram sums, eigendecomposition, factorisations."""

    def __init__(self, x: torch.Tensor, holdout: float, max_holdout_eval: int, sgd_epochs: int, sgd_samples: int,
                 seed: int):
        n = x.shape[0]
        gen = torch.Generator().manual_seed(seed)
        order = torch.randperm(n, generator=gen).to(x.device)
        self.x, self.n = x, n
        self.n_fit = max(1, n - int(round(holdout * n))) if n > 1 else n
        self.fit_idx, self.hold_idx = order[:self.n_fit], order[self.n_fit:]
        self.hold_eval = self.hold_idx[:max_holdout_eval]
        # Raw sums per part, so the full-data system is the sum of the parts (one pass over the data).
        self.parts = [(idx, x[idx]) for idx in (self.fit_idx, self.hold_idx)]
        self.sums = [(xp.T @ xp, xp.sum(0), torch.tensor(float(len(xp)), dtype=x.dtype, device=x.device))
                     for _, xp in self.parts]
        self.gram, self.mx = _centred_gram(*self.sums[0])
        evals, self.evecs = _eigh(self.gram)
        self.evals = evals.clamp(min=0)
        self.hold_rot = (x[self.hold_eval] - self.mx) @ self.evecs
        self.full_gram, self.full_mx = _centred_gram(*(a + b for a, b in zip(*self.sums)))
        self.factors: dict[float, tuple[torch.Tensor, torch.Tensor]] = {}
        self.sgd_samples = min(sgd_samples, n)
        # Drawn now, in the order fit_fast always drew them, so every target sees the same samples.
        self.picks = [torch.randperm(n, generator=gen)[:self.sgd_samples].to(x.device) for _ in range(sgd_epochs)]

    def solve(self, lam: float, rhs: torch.Tensor) -> torch.Tensor:
        """(G + lam I)^-1 rhs for the full centred Gram G; one LU per lam, whatever the number of targets."""
        if lam not in self.factors:
            eye = torch.eye(self.full_gram.shape[0], dtype=self.full_gram.dtype, device=self.full_gram.device)
            self.factors[lam] = torch.linalg.lu_factor(self.full_gram + lam * eye)
        return torch.linalg.lu_solve(*self.factors[lam], rhs)


def fit_fast(x: torch.Tensor, y: torch.Tensor, *, residual: bool = True, holdout: float = 0.2, sgd_epochs: int = 2,
             sgd_samples: int = 4096, batch: int = 256, max_holdout_eval: int = 2000,
             seed: int = 0) -> tuple[AffineMap, dict]:
    """Ridge toward the prior (lam chosen on a hold-out), then SGD through the ReLU; returns (map, fit record)."""
    return fit_fast_many(x, [y], residual=residual, holdout=holdout, sgd_epochs=sgd_epochs, sgd_samples=sgd_samples,
                         batch=batch, max_holdout_eval=max_holdout_eval, seed=seed)[0]


def fit_fast_many(x: torch.Tensor, ys: Sequence[torch.Tensor], *, residual: bool = True, holdout: float = 0.2,
                  sgd_epochs: int = 2, sgd_samples: int = 4096, batch: int = 256, max_holdout_eval: int = 2000,
                  seed: int = 0, chunk: int = 8) -> list[tuple[AffineMap, dict]]:
    """fit_fast(x, y) for every y in ys, `chunk` targets batched at a time (memory ~ 10 chunk d d_t floats)."""
    _check_dims(x, ys, residual)
    if chunk < 1:
        raise UserError(f"chunk {chunk}: expected a positive number of targets per batch")
    if not ys:
        return []
    shared = _Input(x, holdout, max_holdout_eval, sgd_epochs, sgd_samples, seed)
    out: list[tuple[AffineMap, dict]] = []
    for start in range(0, len(ys), chunk):
        out.extend(_fit_chunk(shared, ys[start:start + chunk], residual, batch))
    return out


def _fit_chunk(s: _Input, ys: Sequence[torch.Tensor], residual: bool, batch: int) -> list[tuple[AffineMap, dict]]:
    """The ridge fits, hold-out choices and SGD passes of a few targets of one input, batched over targets."""
    parts = []
    for (idx, xp), (_, _, count) in zip(s.parts, s.sums):
        sums = [_target_sums(xp, y[idx]) for y in ys]           # one target's rows copied at a time
        parts.append((torch.stack([c for c, _ in sums]), torch.stack([t for _, t in sums]), count))
    d, d_t = parts[0][0].shape[1:]
    prior = _prior(d, d_t, residual, parts[0][0])     # W'^T's prior: I^T = I, or 0
    chosen, losses = _choose_ridge(s, *_centred_cross(*parts[0], s.mx), ys, residual)
    cross, my = _centred_cross(*(a + b for a, b in zip(*parts)), s.full_mx)
    del parts
    lams = [rel * _mean_eigenvalue(s.full_gram) for rel in chosen]
    weight_t = cross.new_empty(cross.shape[0], d_t, d).transpose(1, 2)   # column-major per target, as LAPACK's
    for lam in dict.fromkeys(lams):   # one factorisation per distinct lam; its targets' columns solved together
        idx = [t for t, value in enumerate(lams) if value == lam]
        rhs = cross[idx] + lam * prior if residual else cross[idx]
        solved = s.solve(lam, rhs.permute(1, 0, 2).reshape(d, len(idx) * d_t))
        weight_t[idx] = solved.reshape(d, len(idx), d_t).permute(1, 0, 2)
    weight = weight_t.transpose(1, 2).contiguous()
    bias = my - _mm(s.full_mx[None], weight_t).squeeze(-2)
    del cross, weight_t
    steps = [0.1 / max(float(s.evals.max()) / s.n_fit + lam / s.n, 1e-12) for lam in lams]
    _sgd_through_relu(weight, bias, s, ys, [lam / s.n for lam in lams], steps, prior.T, batch)
    return [(AffineMap(weight[t], bias[t]),
             {"fitter": "fast", "residual": residual, "ridge_relative": chosen[t], "ridge_lambda": lams[t],
              "holdout_losses": losses[t], "sgd_epochs": len(s.picks), "sgd_samples": s.sgd_samples,
              "sgd_step": steps[t]}) for t in range(len(ys))]


def _target_sums(xp: torch.Tensor, yp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """X^T Y and sum y of one target over one part of the samples."""
    return xp.T @ yp, yp.sum(0)


def _choose_ridge(s: _Input, cross: torch.Tensor, my: torch.Tensor, ys: Sequence[torch.Tensor],
                  residual: bool) -> tuple[list[float], list[dict[float, float]]]:
    """Per target, the grid's lam (relative) with the lowest hold-out loss of the fit part's ridge, and the losses."""
    losses: list[dict[float, float]] = [{} for _ in ys]
    if len(s.hold_idx):
        rotated = _mm(s.evecs.T, cross)
        y_hold = torch.stack([y[s.hold_eval] for y in ys])
        for rel in RIDGE_GRID:
            lam = rel * _mean_eigenvalue(s.gram)
            numerator = rotated + lam * s.evecs.T if residual else rotated
            pred = torch.relu(_mm(s.hold_rot, numerator / (s.evals + lam)[:, None]) + my[:, None, :])   # V^T W'^T
            for record, value in zip(losses, ((pred - y_hold) ** 2).sum(-1).mean(-1).tolist()):
                record[rel] = value
    return [min(record, key=record.get) if record else RIDGE_GRID[-1] for record in losses], losses


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b with a [T, ...] batch of targets on either side; one target takes the plain 2-D product, so that
    fit_fast's maps keep the exact bits they had before batching (small batched products round differently)."""
    single = [t[0] if t.dim() == 3 and t.shape[0] == 1 else t for t in (a, b)]
    if max(a.dim(), b.dim()) == 3 and all(t.dim() < 3 for t in single):
        return (single[0] @ single[1]).unsqueeze(0)
    return a @ b


def _per_target(values: list[float], like: torch.Tensor) -> torch.Tensor:
    """Per-target scalars as a [T, 1, 1] tensor of the fit's dtype (the same rounding as a Python scalar)."""
    return torch.tensor(values, dtype=like.dtype, device=like.device)[:, None, None]


def _sgd_through_relu(weight: torch.Tensor, bias: torch.Tensor, s: _Input, ys: Sequence[torch.Tensor],
                      ridges: list[float], steps: list[float], prior: torch.Tensor, batch: int,
                      momentum: float = 0.9) -> None:
    """Minibatch SGD with momentum on mean ||M(x) - y||^2 / 2 + ridge / 2 ||W' - P||^2, in place, per target."""
    ridge, step = _per_target(ridges, weight), _per_target(steps, weight)
    vw, vb = torch.zeros_like(weight), torch.zeros_like(bias)
    for picked in s.picks:
        for start in range(0, len(picked), batch):
            idx = picked[start:start + batch]
            xb, yb = s.x[idx], torch.stack([y[idx] for y in ys])
            z = _mm(xb, weight.transpose(1, 2)) + bias[:, None, :]
            err = (torch.relu(z) - yb) * (z > 0)                 # residual through the ReLU
            gw = _mm(err.transpose(1, 2), xb) / len(idx) + ridge * (weight - prior)
            gb = err.mean(-2)
            vw.mul_(momentum).addcmul_(gw, step)
            vb.mul_(momentum).addcmul_(gb, step[:, 0])
            weight -= vw
            bias -= vb


# ------------------------------------------------------------------------ paper and authors (online SGD)
def _online_epoch(m: AffineMap, vw: torch.Tensor, vb: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                  order: torch.Tensor, lr: float, momentum: float, decay: float, prior: torch.Tensor,
                  clip: float | None) -> bool:
    """One pass of batch-1 SGD in `order` with Caffe's clip/momentum/decay update; False if it went non-finite."""
    w, b = m.weight, m.bias
    for i in order.tolist():
        xi = x[i]
        z = torch.mv(w, xi) + b
        err = (torch.relu(z) - y[i]) * (z > 0)
        if clip is not None:   # ||(outer(err, xi), err)|| = ||err|| sqrt(||xi||^2 + 1)
            err = err * (clip / (err.norm() * (xi.dot(xi) + 1).sqrt())).clamp(max=1)
        vw.mul_(momentum).add_(torch.outer(err, xi) + decay * (w - prior), alpha=lr)
        vb.mul_(momentum).add_(err + decay * b, alpha=lr)
        w -= vw
        b -= vb
    return bool(torch.isfinite(w).all() and torch.isfinite(b).all())


def _check_clip(clip: float | None) -> None:
    if clip is not None and not clip > 0:
        raise UserError(f"clip_gradients {clip}: expected a positive gradient norm, or None for no clipping")


def fit_paper(x: torch.Tensor, y: torch.Tensor, *, residual: bool = True, clip_gradients: float | None = None,
              epochs: int = 10, lr: float = 0.001, momentum: float = 0.9, decay: float = 1e-5,
              seed: int = 0) -> tuple[AffineMap, dict]:
    """Section 5.2's online SGD from W = 0 (weight decay acts on W, the learned part of the weight).

    Without the residual (distance maps) W = 0 is a fixed point: every pre-activation is 0, where Caffe's
    ReLU passes no gradient, so E would stay 0. The paper states no initialisation; there W starts as the
    authors' code starts it, N(0, 0.001^2).
    """
    _check_dims(x, [y], residual)
    _check_clip(clip_gradients)
    prior = _prior(y.shape[1], x.shape[1], residual, x)
    gen = torch.Generator().manual_seed(seed)
    start = prior.clone() if residual else \
        AUTHORS_INIT_STD * torch.randn(prior.shape, generator=gen).to(x.dtype).to(x.device)
    m = AffineMap(start, torch.zeros(y.shape[1], dtype=x.dtype, device=x.device))
    vw, vb = torch.zeros_like(m.weight), torch.zeros_like(m.bias)
    for _ in range(epochs):
        if not _online_epoch(m, vw, vb, x, y, torch.randperm(x.shape[0], generator=gen), lr, momentum, decay, prior,
                             clip_gradients):
            return m, {"fitter": "paper", "residual": residual, "diverged": True}
    return m, {"fitter": "paper", "residual": residual, "epochs": epochs, "lr": lr, "momentum": momentum,
               "weight_decay": decay, "clip_gradients": clip_gradients}


def fit_authors(x: torch.Tensor, y: torch.Tensor, *, residual: bool = True, clip_gradients: float | None = None,
                lr: float = 0.1, momentum: float = 0.9, decay: float = 1e-5, max_images: int = 40_000,
                max_epochs: int = 20, patience: int = 2, max_cuts: int = 4, holdout: float = 0.1,
                seed: int = 0) -> tuple[AffineMap, dict]:
    """The authors' head: lr 0.1 cut by 10 after `patience` validations without improvement, 2 per epoch."""
    _check_dims(x, [y], residual)
    _check_clip(clip_gradients)
    gen = torch.Generator().manual_seed(seed)
    n = min(x.shape[0], max_images)
    order = torch.randperm(x.shape[0], generator=gen)[:n]
    n_val = max(1, int(round(holdout * n)))
    train_idx, val_idx = order[n_val:], order[:n_val]
    d, d_t = x.shape[1], y.shape[1]
    prior = _prior(d_t, d, residual, x)
    m = AffineMap(prior + AUTHORS_INIT_STD * torch.randn(d_t, d, generator=gen).to(x.dtype).to(x.device),
                  torch.zeros(d_t, dtype=x.dtype, device=x.device))
    vw, vb = torch.zeros_like(m.weight), torch.zeros_like(m.bias)
    best = (loss(m, x[val_idx], y[val_idx]), m.weight.clone(), m.bias.clone())
    stale, cuts, validations = 0, 0, 0
    for _ in range(max_epochs):
        perm = train_idx[torch.randperm(len(train_idx), generator=gen)]
        for half in (perm[:len(perm) // 2], perm[len(perm) // 2:]):
            finite = _online_epoch(m, vw, vb, x, y, half, lr, momentum, decay, prior, clip_gradients)
            current = loss(m, x[val_idx], y[val_idx]) if finite else math.inf
            validations += 1
            if current < best[0]:
                best, stale = (current, m.weight.clone(), m.bias.clone()), 0
                continue
            stale += 1
            if stale >= patience or not math.isfinite(current):
                lr, stale, cuts = lr / 10, 0, cuts + 1
                m.weight.copy_(best[1])
                m.bias.copy_(best[2])
                vw.zero_()
                vb.zero_()
                if cuts >= max_cuts:
                    break
        if cuts >= max_cuts:
            break
    m.weight.copy_(best[1]), m.bias.copy_(best[2])
    return m, {"fitter": "authors", "residual": residual, "validations": validations, "lr_cuts": cuts,
               "final_lr": lr, "best_validation_loss": best[0], "images": n, "clip_gradients": clip_gradients}


FITTERS: dict[str, Callable[..., tuple[AffineMap, dict]]] = {"fast": fit_fast, "paper": fit_paper,
                                                              "authors": fit_authors}


def get_fitter(name: str) -> Callable[..., tuple[AffineMap, dict]]:
    """The named fitter; UserError listing the valid ones."""
    if name not in FITTERS:
        raise UserError(f"unknown fitter {name!r}; expected one of {', '.join(FITTERS)}")
    return FITTERS[name]
