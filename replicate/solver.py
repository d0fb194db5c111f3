"""Caffe's solver (solver.cpp, sgd_solver.cpp and its siblings) on our PyTorch Net.

    solver = Solver("solver.prototxt", root=".", weights="init.caffemodel", dropout="caffe")
    solver.solve()                       # train to max_iter with tests and snapshots
    solver.step(100); solver.test()      # or piecewise
    solver.snapshot(); solver.restore("snap_iter_100.solverstate")

Python API for the experiment pipeline:
    Solver(solver_param, root=None, weights=None, net_param=None, seed=None, dropout="caffe",
           device="cpu", data_override=None, log_path=None, progress=False)
  - solver_param: a SolverParameter or the path of a solver.prototxt. Paths inside it (net files,
    snapshot_prefix, the nets' LMDB sources) resolve against `root` (default: the current directory),
    as Caffe resolves them against its working directory.
  - net_param: a NetParameter used instead of the solver's net (train and generic test nets).
  - seed: overrides random_seed (default random_seed, or 0 when it is unset: Caffe would use the
    clock; we prefer a recorded, reproducible seed). It seeds the fillers, the data layers and the
    global torch RNG (Dropout's masks), as Caffe::set_random_seed does.
  - dropout: "caffe" (inverted, identity at TEST) or "paper" (halve at TEST); logged and snapshotted.
  - data_override: a callable returning the next training batch, either a tuple of tensors in the
    order of the TRAIN data layer's tops (e.g. (data, label)) or a dict blob name -> tensor. The TRAIN
    data layer becomes an Input layer fed by it (the paper's transform-augmented batches come this
    way); it is called once at construction for the blob shapes, and that batch is used first.
    On resume the caller positions its own batch stream; the sidecar still restores the RNGs.
  - .stop_requested = True (the CLI's Ctrl-C) ends solve() at the next iteration boundary with a
    snapshot to resume from, as Caffe's SIGINT does.
  - .records holds the train losses of display iterations (iter % display == 0) and every test
    output as dicts; the log file has the loss and lr of every iteration.

Caffe's iteration, reproduced in this order: test (at test_interval, and at 0 if
test_initialization); iter_size forward/backward passes accumulating diffs (displayed loss: their
mean, smoothed over average_loss iterations); the rate of the current iteration; ClipGradients
(global L2 norm of the accumulated diffs, before normalisation, as Caffe's ApplyUpdate does);
then per learnable blob Normalize (/ iter_size), Regularize (L2 or L1 with weight_decay *
decay_mult), ComputeUpdateValue (type-specific, local rate lr * lr_mult), Update (w -= diff);
iter += 1; snapshot at iter % snapshot == 0. solve() ends like Caffe: a snapshot after training,
a forward-only pass reporting the final loss (consuming a training batch), a final test.
Blobs with lr_mult 0 get no gradient (Caffe's param_propagate_down), so their diff is 0.

Snapshots: PREFIX_iter_N.caffemodel and PREFIX_iter_N.solverstate as Caffe writes them (history
blobs in learnable order; AdaDelta and Adam append their second history after all first ones), plus
PREFIX_iter_N.solverstate.json, which Caffe ignores: data cursors, RNG states, dropout convention,
seed and the solver configuration.

Resuming: Caffe restores iter, current_step, history and the learned_net weights, but builds fresh
data layers, so a resumed Caffe process reads its LMDBs from record 0 again (resume_data="caffe").
The default, resume_data="continue", puts every cursor and RNG where the interrupted run left them:
from our .json sidecar when present, else (a Caffe solverstate) at the record an uninterrupted Caffe
run would read next, iter * iter_size * batch_size for the train net and the records consumed by
earlier test passes for each test net. Only "continue" lands on the weights of an uninterrupted run:
the fixture's train_iter_12 was written by one, and "continue" from its train_iter_6 reaches it
(tests/fixtures/NOTES.md).
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from google.protobuf import text_format

import lmdb_tools  # noqa: F401  (registers the net's Data layer)
from convert import caffe_pb2 as pb
from convert import protoio
from convert.errors import UserError, about
from convert.layers.base import DROPOUT_CAFFE, DROPOUT_PAPER
from convert.net import LearnableBlob, Net, layer_included, with_inputs
from replicate.lr_policy import check_policy, learning_rate

SOLVER_TYPES = ("SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam")
TWO_HISTORIES = ("AdaDelta", "Adam")
RESUME_DATA = ("caffe", "continue")

Batch = Sequence[torch.Tensor] | Mapping[str, torch.Tensor]


class Solver:
    """Caffe's Solver + SGDSolver family: trains a Net with Caffe's update rules, tests, snapshots."""

    def __init__(self, solver_param: pb.SolverParameter | str | os.PathLike, *,
                 root: str | os.PathLike | None = None, weights: str | Sequence[str] | None = None,
                 net_param: pb.NetParameter | None = None, seed: int | None = None,
                 dropout: str = DROPOUT_CAFFE, device: str | torch.device = "cpu",
                 data_override: Callable[[], Batch] | None = None,
                 log_path: str | os.PathLike | None = None, progress: bool = False, channels_last: bool = True):
        # channels_last (convert.net.Net): train and test nets keep 4-D blobs in torch's channels_last
        # layout, 1.3x the speed of the default one for the mini and full CaffeNets (benchmarks/RESULTS.md,
        # "solver"), the same values up to float rounding (tests/test_solver_fixture.py holds the
        # trajectory to real Caffe's).
        self.channels_last = channels_last
        self.root = Path(root) if root is not None else Path.cwd()
        if not isinstance(solver_param, pb.SolverParameter):
            solver_param = protoio.read_solver(self._path(solver_param))
        self.param = param = solver_param
        _check_solver(param)
        if dropout not in (DROPOUT_CAFFE, DROPOUT_PAPER):
            raise UserError(f"dropout convention {dropout!r}: expected {DROPOUT_CAFFE!r} or {DROPOUT_PAPER!r}")
        self.type = param.type
        self.seed = int(seed if seed is not None else (param.random_seed if param.random_seed >= 0 else 0))
        self.dropout = dropout
        try:
            self.device = torch.device(device)
        except RuntimeError as e:
            raise UserError(f"device {device!r}: {e}") from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"device {device!r}: no CUDA device is visible to torch (this build: {torch.__version__}); "
                            "install a CUDA build of torch or train on the cpu")
        self.progress = progress
        torch.manual_seed(self.seed)

        self.data_override = data_override
        self._pending: dict[str, torch.Tensor] | None = None
        self.net = self._build_train_net(net_param).to(self.device)
        self.test_nets = [n.to(self.device) for n in self._build_test_nets(net_param)]
        for test_net in self.test_nets:
            test_net.share_blobs_from(self.net)
        self.learnable: list[LearnableBlob] = self.net.learnable_blobs()
        for blob in self.learnable:
            if isinstance(blob.tensor, torch.nn.Parameter):
                blob.tensor.requires_grad_(blob.lr_mult != 0)
        n_hist = len(self.learnable) * (2 if self.type in TWO_HISTORIES else 1)
        self.history = [torch.zeros_like(self.learnable[i % len(self.learnable)].tensor,
                                         requires_grad=False) for i in range(n_hist)]
        self._train_outputs = list(dict.fromkeys([*self.net.output_blobs, *self.net.loss_weights]))

        self.iter = 0
        self.current_step = 0
        self._losses: list[float] = []
        self.smoothed_loss = 0.0
        self.records: list[dict] = []
        self.last_snapshot: Path | None = None
        self.stop_requested = False     # set (e.g. by a SIGINT handler) to stop at the next iteration boundary
        self.weights_source = [weights] if isinstance(weights, str) else list(weights or param.weights)
        prefix = param.snapshot_prefix or (Path(self._net_file() or "snapshot").with_suffix("").as_posix())
        self.snapshot_prefix = prefix
        self.log_path = Path(log_path) if log_path else self._log_path_for(prefix)
        self._log(f"config {json.dumps(self.config())}")
        for source in self.weights_source:
            self._load_weights(source)

    # ---------------------------------------------------------------- building
    def _path(self, p: str | os.PathLike) -> Path:
        return Path(p) if Path(p).is_absolute() else self.root / p

    def _net_file(self) -> str | None:
        return self.param.train_net or self.param.net or None

    def _log_path_for(self, prefix: str) -> Path:
        path = self._path(prefix)
        return path / "train.log" if prefix.endswith("/") else path.with_name(path.name + ".log")

    def _build_train_net(self, net_param: pb.NetParameter | None) -> Net:
        p = self.param
        sources = [p.HasField("train_net_param"), bool(p.train_net), p.HasField("net_param"), bool(p.net)]
        if net_param is None:
            if sum(sources) != 1:
                raise UserError("solver: give exactly one of train_net_param, train_net, net_param, net "
                                f"(found {sum(sources)})")
            if p.HasField("train_net_param"):
                net_param = p.train_net_param
            elif p.HasField("net_param"):
                net_param = p.net_param
            else:
                net_param = protoio.read_net(self._path(p.train_net or p.net))
        state = pb.NetState(phase=pb.TRAIN)
        state.MergeFrom(net_param.state)
        state.MergeFrom(p.train_state)
        state.phase = pb.TRAIN
        if self.data_override is not None:
            net_param = self._fed_by_override(net_param, state)
        net = Net(net_param, pb.TRAIN, root=self.root, seed=self.seed, dropout=self.dropout,
                  level=state.level, stages=list(state.stage), channels_last=self.channels_last)
        missing = [b for b in net.input_blobs if self._pending is None or b not in self._pending]
        if missing:
            raise UserError(f"train net: input blobs {missing} have no data; give the net a data layer "
                            "or pass data_override")
        return net

    def _fed_by_override(self, net_param: pb.NetParameter, state: pb.NetState) -> pb.NetParameter:
        """The TRAIN net with its data layer turned into Input layers shaped like the first override batch."""
        train_only = pb.NetParameter()
        train_only.CopyFrom(net_param)
        del train_only.layer[:]
        train_only.layer.extend(lp for lp in net_param.layer if layer_included(lp, state))
        sources = [lp for lp in train_only.layer if not lp.bottom and lp.top]
        if not sources:
            raise UserError("data_override: the TRAIN net has no layer without bottoms to replace")
        self._pending = self._as_inputs(self.data_override(), list(sources[0].top))
        return with_inputs(train_only, {k: tuple(v.shape) for k, v in self._pending.items()})

    def _as_inputs(self, batch: Batch, tops: Sequence[str]) -> dict[str, torch.Tensor]:
        if isinstance(batch, Mapping):
            return {k: torch.as_tensor(v, dtype=torch.float32) for k, v in batch.items()}
        if len(batch) != len(tops):
            raise UserError(f"data_override returned {len(batch)} tensors; the data layer has tops {list(tops)}")
        return {k: torch.as_tensor(v, dtype=torch.float32) for k, v in zip(tops, batch)}

    def _build_test_nets(self, net_param: pb.NetParameter | None) -> list[Net]:
        """Caffe's InitTestNets: specific test nets first, then the generic net for the remaining test_iter."""
        p = self.param
        params = list(p.test_net_param) + [protoio.read_net(self._path(f)) for f in p.test_net]
        generic = net_param
        if generic is None and p.HasField("net_param"):
            generic = p.net_param
        elif generic is None and p.net:
            generic = protoio.read_net(self._path(p.net))
        if generic is not None:
            params += [generic] * max(0, len(p.test_iter) - len(params))
        if len(p.test_iter) != len(params):
            raise UserError(f"solver: {len(p.test_iter)} test_iter values for {len(params)} test nets")
        if p.test_state and len(p.test_state) != len(params):
            raise UserError(f"solver: {len(p.test_state)} test_state values for {len(params)} test nets")
        nets = []
        for i, net_p in enumerate(params):
            state = pb.NetState(phase=pb.TEST)
            state.MergeFrom(net_p.state)
            if p.test_state:
                state.MergeFrom(p.test_state[i])
            nets.append(Net(net_p, pb.TEST, root=self.root, seed=self.seed, dropout=self.dropout,
                            level=state.level, stages=list(state.stage), channels_last=self.channels_last))
        return nets

    def _load_weights(self, source: str) -> None:
        """Caffe's CopyLayers: each comma-separated caffemodel into the train net (test nets share it)."""
        for path in source.split(","):
            report = self.net.load_weights(self._path(path))
            self._log(f"weights {path} loaded={report['loaded']} ignored={report['ignored']} "
                      f"untouched={report['untouched']}")

    def config(self) -> dict:
        """What made this run: solver text, seed, dropout convention, weights, device."""
        return {"solver": text_format.MessageToString(self.param, as_one_line=True), "type": self.type,
                "seed": self.seed, "dropout": self.dropout, "weights": self.weights_source,
                "device": str(self.device), "root": str(self.root),
                "data_override": self.data_override is not None}

    # ----------------------------------------------------------------- running
    @property
    def images_per_iter(self) -> int:
        """Training images per iteration (batch of the first data blob times iter_size)."""
        first = self.net.layer_params[0].top[0]
        return int(self.net.blob_shapes[first][0]) * self.param.iter_size

    def solve(self) -> None:
        """Caffe's Solver::Solve: step to max_iter, snapshot, report the final loss and test.

        A stop request ends training after the current iteration with the same snapshot, as Caffe's
        SIGINT does, and skips the final loss and test.
        """
        start = self.iter
        self.step(self.param.max_iter - self.iter)
        p = self.param
        if p.snapshot_after_train and (not p.snapshot or self.iter % p.snapshot != 0):
            self.snapshot()
        if self.stop_requested:
            return
        if p.display and self.iter % p.display == 0:
            with torch.no_grad():
                loss = self._check_finite(self.net.loss(self._forward()).item())
            self._update_smoothed(loss, self.iter - start)
            self._record({"phase": "train", "iter": self.iter, "loss": self.smoothed_loss, "raw_loss": loss})
        if p.test_interval and self.iter % p.test_interval == 0:
            self.test()

    def step(self, iters: int) -> None:
        """Caffe's Solver::Step: `iters` training iterations with tests and snapshots on schedule."""
        p = self.param
        stop, start = self.iter + iters, self.iter
        self._losses, self.smoothed_loss = [], 0.0
        bar = None
        if self.progress:
            from tqdm import tqdm
            bar = tqdm(total=iters, desc="train", unit="it")
        try:
            while self.iter < stop:
                if p.test_interval and self.iter % p.test_interval == 0 and (self.iter > 0 or p.test_initialization):
                    self.test()
                tic = time.perf_counter()
                loss = self._forward_backward()
                self._update_smoothed(loss, self.iter - start)
                rate = self._apply_update()
                self._record({"phase": "train", "iter": self.iter, "loss": self.smoothed_loss, "raw_loss": loss,
                              "lr": rate}, keep=bool(p.display) and self.iter % p.display == 0)
                self.iter += 1
                if p.snapshot and self.iter % p.snapshot == 0:
                    self.snapshot()
                if self.stop_requested:
                    self._log(f"stopped on request at iter={self.iter}")
                    break
                if bar is not None:
                    bar.set_postfix(loss=f"{self.smoothed_loss:.4g}", lr=f"{rate:.3g}",
                                    img_s=f"{self.images_per_iter / (time.perf_counter() - tic):.1f}")
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()

    def _forward(self) -> dict[str, torch.Tensor]:
        if self.data_override is None:
            return self.net(None, outputs=self._train_outputs)
        batch, self._pending = self._pending, None
        if batch is None:
            batch = self._as_inputs(self.data_override(), self.net.input_blobs)
        return self.net({k: v.to(self.device) for k, v in batch.items()}, outputs=self._train_outputs)

    def _forward_backward(self) -> float:
        """iter_size forward/backward passes; diffs accumulate in .grad; returns the mean loss."""
        for blob in self.learnable:
            blob.tensor.grad = None
        total = 0.0
        for _ in range(self.param.iter_size):
            loss = self.net.loss(self._forward())
            if loss.requires_grad:
                loss.backward()
            total += self._check_finite(loss.item())
        return total / self.param.iter_size

    def _check_finite(self, loss: float) -> float:
        if not math.isfinite(loss):
            kept = f"the last good snapshot is {self.last_snapshot}" if self.last_snapshot else "no snapshot was written"
            message = f"iteration {self.iter}: loss is {loss}; training stopped ({kept})"
            self._log(f"error {message}")
            raise UserError(message)
        return loss

    def _update_smoothed(self, loss: float, index: int) -> None:
        """Caffe's UpdateSmoothedLoss: running mean over the last average_loss losses."""
        n = max(1, self.param.average_loss)
        if len(self._losses) < n:
            self._losses.append(loss)
            self.smoothed_loss = (self.smoothed_loss * (len(self._losses) - 1) + loss) / len(self._losses)
        else:
            i = index % n
            self.smoothed_loss += (loss - self._losses[i]) / n
            self._losses[i] = loss

    # ----------------------------------------------------------------- update
    def learning_rate(self) -> float:
        """The rate for the current iteration (advances current_step as Caffe's GetLearningRate does)."""
        rate, self.current_step = learning_rate(self.param, self.iter, self.current_step)
        return rate

    @torch.no_grad()
    def _apply_update(self) -> float:
        """Caffe's SGDSolver::ApplyUpdate; returns the rate used."""
        rate = self.learning_rate()
        diffs = [b.tensor.grad if b.tensor.grad is not None else torch.zeros_like(b.tensor) for b in self.learnable]
        self._clip(diffs)
        p = self.param
        for i, (blob, diff) in enumerate(zip(self.learnable, diffs)):
            # In place on the gradient, as Caffe works on the diff: no temporaries of 37M floats for fc6.
            if p.iter_size > 1:
                diff.mul_(float(np.float32(1.0) / np.float32(p.iter_size)))
            local_decay = np.float32(p.weight_decay) * np.float32(blob.decay_mult)
            if local_decay:
                reg = blob.tensor if p.regularization_type == "L2" else torch.sign(blob.tensor)
                diff.add_(reg, alpha=float(local_decay))
            local_rate = float(np.float32(rate) * np.float32(blob.lr_mult))
            blob.tensor.sub_(self._update_value(i, diff, local_rate))
        return rate

    def _clip(self, diffs: list[torch.Tensor]) -> None:
        clip = self.param.clip_gradients
        if clip < 0:
            return
        norm = math.sqrt(sum(float((d.double() ** 2).sum()) for d in diffs))
        if norm > clip:
            for d in diffs:
                d.mul_(clip / norm)

    def _update_value(self, i: int, diff: torch.Tensor, local_rate: float) -> torch.Tensor:
        """ComputeUpdateValue of the solver type: the value subtracted from blob i."""
        p, h = self.param, self.history[i]
        if self.type == "SGD":
            h.mul_(p.momentum).add_(diff, alpha=local_rate)
            return h
        if self.type == "Nesterov":
            previous = h.clone()
            h.mul_(p.momentum).add_(diff, alpha=local_rate)
            return (1 + p.momentum) * h - p.momentum * previous
        if self.type == "AdaGrad":
            h.add_(diff * diff)
            return local_rate * diff / (h.sqrt() + p.delta)
        if self.type == "RMSProp":
            h.mul_(p.rms_decay).add_(diff * diff, alpha=1 - p.rms_decay)
            return local_rate * diff / (h.sqrt() + p.delta)
        h2 = self.history[len(self.learnable) + i]
        if self.type == "AdaDelta":
            h.mul_(p.momentum).add_(diff * diff, alpha=1 - p.momentum)
            step = diff * ((h2 + p.delta) / (h + p.delta)).sqrt()
            h2.mul_(p.momentum).add_(step * step, alpha=1 - p.momentum)
            return local_rate * step
        # Adam: history = m, second history = v, bias correction folded into the rate.
        t = self.iter + 1
        correction = math.sqrt(1 - p.momentum2 ** t) / (1 - p.momentum ** t)
        h.mul_(p.momentum).add_(diff, alpha=1 - p.momentum)
        h2.mul_(p.momentum2).add_(diff * diff, alpha=1 - p.momentum2)
        return (local_rate * correction) * h / (h2.sqrt() + p.delta)

    # ------------------------------------------------------------------- test
    def test(self) -> list[dict[str, float | list[float]]]:
        """Caffe's TestAll: each test net run test_iter times; every output element averaged."""
        results = []
        for k, net in enumerate(self.test_nets):
            scores = evaluate(net, self.param.test_iter[k])
            results.append(scores)
            self._record({"phase": "test", "net": k, "iter": self.iter, **scores})
        return results

    # -------------------------------------------------------------- snapshots
    def snapshot(self) -> Path:
        """Write PREFIX_iter_N.caffemodel, .solverstate and the .solverstate.json sidecar; return the state path."""
        if self.param.snapshot_format != pb.SolverParameter.BINARYPROTO:
            raise UserError("solver: snapshot_format HDF5 is not supported; use BINARYPROTO")
        name = f"{self.snapshot_prefix}_iter_{self.iter}"
        model, state_path = f"{name}.caffemodel", self._path(f"{name}.solverstate")
        self.net.save_caffemodel(self._path(model))
        state = pb.SolverState(iter=self.iter, learned_net=model, current_step=self.current_step)
        state.history.extend(protoio.array_to_blob(h.detach().cpu().numpy()) for h in self.history)
        # The sidecar first: a run killed between the writes leaves no .solverstate to resume half-restored.
        sidecar = {"iter": self.iter, "current_step": self.current_step, **self.config(), **self._rng_state()}
        protoio.atomic_write(Path(f"{state_path}.json"), json.dumps(sidecar, indent=1).encode())
        protoio.atomic_write(state_path, state.SerializeToString())
        self.last_snapshot = state_path
        self._log(f"snapshot iter={self.iter} model={model} state={name}.solverstate")
        return state_path

    def restore(self, path: str | os.PathLike, resume_data: str = "continue") -> None:
        """Caffe's Restore from a .solverstate (ours or Caffe's); resume_data "caffe" or "continue"."""
        if resume_data not in RESUME_DATA:
            raise UserError(f"resume_data {resume_data!r}: expected one of {', '.join(RESUME_DATA)}")
        path = self._path(path)
        with about(path):
            state = protoio.read_binary_proto(path, pb.SolverState, "solverstate")
            if state.iter < 0 or state.current_step < 0:
                raise UserError(f"iter {state.iter} and current_step {state.current_step} must not be negative")
            self._check_history(state, path)
            history = []
            for i, blob in enumerate(state.history):   # everything is read and checked before anything is set
                with about(f"history blob {i}"):
                    history.append(protoio.blob_to_array(blob))
            sidecar = Path(f"{path}.json")
            saved = self._read_sidecar(sidecar, state) if resume_data == "continue" and sidecar.exists() else None
            model = self._path(state.learned_net)
            if state.learned_net and not model.exists() and (path.parent / Path(state.learned_net).name).exists():
                model = path.parent / Path(state.learned_net).name  # a snapshot directory moved as a whole
            if state.learned_net:
                report = self.net.load_weights(model)
                if report["untouched"]:
                    raise UserError(f"{path}: {model} is a snapshot of another net: it has no weights for layers "
                                    f"{report['untouched']}")
        with torch.no_grad():
            for h, array in zip(self.history, history):
                h.copy_(torch.from_numpy(array).reshape(h.shape))
        self.iter, self.current_step = int(state.iter), int(state.current_step)
        if resume_data == "caffe":
            for layer in self._data_layers(self.net) + [l for n in self.test_nets for l in self._data_layers(n)]:
                layer.reset()
        elif saved is not None:
            self._set_rng_state(saved)
        else:
            self._continue_caffe_cursors()
            note = (f"{path}: no {sidecar.name} beside it (a Caffe snapshot, or one cut short): data cursors are "
                    "placed where an uninterrupted Caffe run would be, but the random streams (dropout, crops, "
                    "mirrors) start afresh, so the run will not match an uninterrupted one exactly")
            self._log(f"note: {note}")
            warnings.warn(note, stacklevel=2)
        self._log(f"restored {path} iter={self.iter} current_step={self.current_step} resume_data={resume_data}")

    def _check_history(self, state: pb.SolverState, path: Path) -> None:
        n = len(self.learnable)
        if len(state.history) != len(self.history):
            raise UserError(f"{path}: a snapshot of another net or solver: {len(state.history)} history blobs, "
                            f"this {self.type} solver on net {self.net.name!r} needs {len(self.history)} "
                            f"({n} learnable blobs: " + ", ".join(f"{b.layer}[{b.index}]" for b in self.learnable)
                            + ")")
        bad = []
        for i, (h, blob) in enumerate(zip(self.history, state.history)):
            theirs = protoio.blob_shape(blob)
            # A legacy 4-D history blob may hold a 2-D parameter: same count is enough then.
            same = int(np.prod(theirs, dtype=np.int64)) == h.numel() and (
                len(theirs) != h.dim() or tuple(theirs) == tuple(h.shape))
            if not same:
                b = self.learnable[i % n]
                bad.append(f"history {i} has shape {tuple(theirs)}, {b.layer}[{b.index}] is {tuple(h.shape)}")
        if bad:
            raise UserError(f"{path}: a snapshot of another net: " + "; ".join(bad))

    # ------------------------------------------------------------ data cursors
    @staticmethod
    def _data_layers(net: Net) -> list:
        return [layer for layer in net.layers if hasattr(layer, "seek") and hasattr(layer, "cursor")]

    def _continue_caffe_cursors(self) -> None:
        """Cursors where an uninterrupted Caffe run would be at self.iter (no sidecar to read them from)."""
        p = self.param
        for layer in self._data_layers(self.net):
            layer.seek(self.iter * p.iter_size * layer.batch_size)
        # Test passes at k = 0, ti, 2ti, ... < iter (k = 0 only with test_initialization), in closed form:
        # a corrupt or huge iter must not loop.
        passes, interval = 0, abs(p.test_interval)   # k % -t == 0 exactly when k % t == 0
        if interval and self.iter > 0:
            passes = (self.iter + interval - 1) // interval - (0 if p.test_initialization else 1)
        for net, test_iter in zip(self.test_nets, p.test_iter):
            for layer in self._data_layers(net):
                layer.seek(passes * test_iter * layer.batch_size)

    def _nets(self) -> dict[str, Net]:
        return {"train": self.net, **{f"test{k}": n for k, n in enumerate(self.test_nets)}}

    def _rng_state(self) -> dict:
        """Cursors and RNG states that make a resumed run continue exactly (the sidecar's payload)."""
        encode = lambda t: base64.b64encode(t.cpu().numpy().tobytes()).decode()
        return {"torch_rng": encode(torch.get_rng_state()),
                **({"cuda_rng": encode(torch.cuda.get_rng_state(self.device))} if self.device.type == "cuda" else {}),
                "nets": {name: {"generator": encode(net.ctx.generator.get_state()),
                                "data_layers": [{"cursor": layer.cursor,
                                                 "rng": layer.transformer.rng.bit_generator.state}
                                                for layer in self._data_layers(net)]}
                         for name, net in self._nets().items()}}

    def _read_sidecar(self, sidecar: Path, state: pb.SolverState) -> dict:
        """The sidecar's RNG states and cursors, decoded and checked against this solver (UserError naming it)."""
        try:
            saved = json.loads(sidecar.read_text())
            if saved.get("iter", state.iter) != state.iter:
                raise ValueError(f"it is of iteration {saved.get('iter')!r}, the solverstate of {state.iter}")
            nets = {}
            for name, net in self._nets().items():
                entry = saved["nets"][name]
                layers = []
                for st in entry["data_layers"]:
                    np.random.PCG64().state = st["rng"]   # raises if the dict is no PCG64 state
                    if type(st["cursor"]) is not int or st["cursor"] < 0:
                        raise ValueError(f"cursor {st['cursor']!r} of net {name} is not a record index")
                    layers.append((st["cursor"], st["rng"]))
                nets[name] = (_rng_bytes(entry["generator"], net.ctx.generator.get_state(), f"net {name}"), layers)
            cuda = {"cuda_rng": _rng_bytes(saved["cuda_rng"], torch.cuda.get_rng_state(self.device), "cuda")} \
                if self.device.type == "cuda" and "cuda_rng" in saved else {}
            return {"torch_rng": _rng_bytes(saved["torch_rng"], torch.get_rng_state(), "torch"), "nets": nets,
                    "dropout": saved.get("dropout"), **cuda}
        except KeyError as e:
            detail = f"no {e} entry"
        except (ValueError, TypeError, AttributeError, OverflowError, RecursionError, RuntimeError,
                binascii.Error) as e:
            detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{sidecar}: corrupt snapshot sidecar ({detail}); delete it to resume as from a Caffe "
                        "snapshot, or pass --resume-data caffe")

    def _set_rng_state(self, saved: dict) -> None:
        """Apply a sidecar read by _read_sidecar."""
        torch.set_rng_state(saved["torch_rng"])
        if "cuda_rng" in saved:   # dropout masks drawn on the GPU (a snapshot of a GPU run, resumed on one)
            torch.cuda.set_rng_state(saved["cuda_rng"], self.device)
        for name, net in self._nets().items():
            generator, layers = saved["nets"][name]
            net.ctx.generator.set_state(generator)
            for layer, (cursor, rng) in zip(self._data_layers(net), layers):
                layer.seek(cursor)
                layer.transformer.rng.bit_generator.state = rng
        if saved.get("dropout") != self.dropout:
            self._log(f"note: snapshot was trained with dropout={saved.get('dropout')}, continuing with {self.dropout}")

    # -------------------------------------------------------------------- log
    def _record(self, entry: dict, keep: bool = True) -> None:
        """Log an entry; keep it in .records too (train losses only at display iterations, as Caffe shows them)."""
        if keep:
            self.records.append(entry)
        self._log(" ".join(f"{k}={v}" for k, v in entry.items()))

    def _log(self, line: str) -> None:
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a") as f:
                f.write(line + "\n")
        except OSError as e:   # a full or read-only disk
            raise UserError(f"{self.log_path}: cannot write the solver log ({e.strerror or e})") from None


def _rng_bytes(text, like: torch.Tensor, what: str) -> torch.Tensor:
    """A base64 RNG state of the same size as `like` (ValueError otherwise)."""
    if not isinstance(text, str):
        raise ValueError(f"the {what} RNG state is {type(text).__name__}, not base64 text")
    state = torch.from_numpy(np.frombuffer(base64.b64decode(text, validate=True), np.uint8).copy())
    if state.numel() != like.numel():
        raise ValueError(f"the {what} RNG state has {state.numel()} bytes, expected {like.numel()}")
    torch.Generator().set_state(state)   # raises RuntimeError for an invalid mt19937 state
    return state


def evaluate(net: Net, iterations: int, progress: bool = False) -> dict[str, float | list[float]]:
    """Caffe's Test: run the net `iterations` times and average each element of each output blob."""
    from tqdm import tqdm
    sums: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for _ in tqdm(range(iterations), desc="test", unit="batch", disable=not progress):
            for name, blob in net().items():
                value = blob.detach().cpu().double().numpy().ravel()
                sums[name] = sums[name] + value if name in sums else value
    means = {name: s / iterations for name, s in sums.items()}
    return {name: float(m[0]) if m.size == 1 else m.tolist() for name, m in means.items()}


def _check_solver(param: pb.SolverParameter) -> None:
    """Reject what Caffe rejects at set-up (its CHECKs and LOG(FATAL)s) as UserErrors."""
    if param.type not in SOLVER_TYPES:
        raise UserError(f"solver: unknown type {param.type!r}; expected one of {', '.join(SOLVER_TYPES)}")
    check_policy(param)
    if param.regularization_type not in ("L1", "L2"):
        raise UserError(f"solver: unknown regularization_type {param.regularization_type!r}; expected L1 or L2")
    if param.type in ("AdaGrad", "RMSProp") and param.momentum != 0:
        raise UserError(f"solver: momentum cannot be used with {param.type} (Caffe requires momentum 0)")
    if param.type == "RMSProp" and not 0 <= param.rms_decay < 1:
        raise UserError("solver: rms_decay must be in [0, 1)")
    if param.iter_size < 1:
        raise UserError("solver: iter_size must be at least 1")
