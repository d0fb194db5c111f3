"""A Caffe net as a torch.nn.Module: built from a NetParameter and a phase, blobs by name.

    net = Net.from_files("deploy.prototxt", "weights.caffemodel")
    blobs = net({"data": x}, outputs=["fc7", "prob"])

Caffe semantics kept here: NetStateRule include/exclude by phase, level and stage; layers built in
order with their bottoms' shapes; in-place layers (top == bottom) replace the blob, so a blob read
after them holds its last value (as extract_features sees it); a blob consumed twice is simply read
twice (Caffe's Split layers are implicit; autograd sums the gradients as Split's backward does);
ParamSpec names share blobs between layers; loss weights default to 1 on top 0 of loss layers.
Weights load by layer name like Caffe's CopyTrainedLayersFrom: unknown source layers are ignored,
a blob count or shape mismatch is an error.
"""
from __future__ import annotations

import functools
import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from convert import caffe_pb2 as pb
from convert import protoio
from convert.errors import UserError, about
from convert.layers.base import DROPOUT_CAFFE, POOLING_CAFFE, POOLING_RULES, CaffeLayer, NetContext, Shape
from convert.registry import layer_class


@dataclass
class LearnableBlob:
    """One learnable blob in Caffe's learnable_params_ order, with its multipliers."""
    layer: str
    index: int
    tensor: torch.Tensor
    lr_mult: float
    decay_mult: float


def state_meets_rule(state: pb.NetState, rule: pb.NetStateRule) -> bool:
    """Caffe's Net::StateMeetsRule."""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    if any(s not in state.stage for s in rule.stage):
        return False
    return not any(s in state.stage for s in rule.not_stage)


def layer_included(layer: pb.LayerParameter, state: pb.NetState) -> bool:
    """Caffe's FilterNet rule for one layer."""
    if layer.include and layer.exclude:
        raise UserError(f"layer {layer.name!r}: specify include or exclude rules, not both")
    if layer.include:
        return any(state_meets_rule(state, r) for r in layer.include)
    return not any(state_meets_rule(state, r) for r in layer.exclude)


def with_inputs(net_param: pb.NetParameter, shapes: Mapping[str, Shape]) -> pb.NetParameter:
    """A copy of the net where layers producing the named blobs become Input layers of those shapes.

    This is how a train_val net runs on arrays instead of its Data layer (`--input data=x.npy`).
    """
    out = pb.NetParameter()
    out.CopyFrom(net_param)
    del out.layer[:]
    done: set[str] = set()
    for layer in net_param.layer:
        replaced = [t for t in layer.top if t in shapes]
        if replaced and not layer.bottom:  # TRAIN and TEST twins each become an Input with their rules
            inp = out.layer.add(name=layer.name, type="Input", top=replaced)
            inp.include.extend(layer.include)
            inp.exclude.extend(layer.exclude)
            for t in replaced:
                inp.input_param.shape.add().dim.extend(int(d) for d in shapes[t])
            done.update(replaced)
        else:
            out.layer.add().CopyFrom(layer)
    missing = set(shapes) - done
    if missing:
        raise UserError(f"no data or input layer produces {sorted(missing)}")
    return out


class Net(nn.Module):
    """A Caffe NetParameter instantiated for one phase; call with input tensors, get blobs by name."""

    def __init__(self, net_param: pb.NetParameter, phase: int = pb.TEST, *, root: str | os.PathLike | None = None,
                 seed: int = 0, dropout: str = DROPOUT_CAFFE, level: int = 0, stages: Sequence[str] = (),
                 pooling: str = POOLING_CAFFE, channels_last: bool = False):
        super().__init__()
        # channels_last: every 4-D blob is kept in torch's channels_last layout. Same values (up to the
        # float rounding of a different conv kernel), about 1.3x faster on the CPU for the mini and full
        # CaffeNets the solver trains (benchmarks/RESULTS.md, "channels_last").
        self.channels_last = channels_last
        if pooling not in POOLING_RULES:
            raise UserError(f"pooling rule {pooling!r}: expected one of {', '.join(POOLING_RULES)}")
        state = pb.NetState(phase=phase, level=level, stage=list(stages))
        if net_param.HasField("state"):  # the prototxt's own state, overridden by the explicit phase
            state.MergeFrom(net_param.state)
            state.phase = phase
        gen = torch.Generator().manual_seed(seed)
        self.ctx = NetContext(phase=phase, root=Path(root) if root else Path.cwd(), seed=seed,
                              dropout=dropout, pooling=pooling, generator=gen)
        self.name = net_param.name
        self.layer_params: list[pb.LayerParameter] = []
        self.layers = nn.ModuleList()
        self.blob_shapes: dict[str, Shape] = {}
        self.input_blobs: list[str] = []
        for lp in net_param.layer:
            if layer_included(lp, state):
                self._add_layer(lp)
        self.output_blobs = self._net_outputs()
        self._share_named_params()
        self.loss_weights = self._loss_weights()

    # ------------------------------------------------------------ building
    def _add_layer(self, lp: pb.LayerParameter) -> None:
        for b in lp.bottom:
            if b not in self.blob_shapes:
                raise UserError(f"layer {lp.name!r} ({lp.type}): bottom blob {b!r} is not produced by any earlier layer")
        spec = pb.LayerParameter()
        spec.CopyFrom(lp)
        del spec.blobs[:]  # weights live in the module, not in the kept parameter
        cls = layer_class(lp.type, lp.name)
        _check_bottom_count(cls, lp)
        try:
            layer: CaffeLayer = cls(spec, [self.blob_shapes[b] for b in lp.bottom], self.ctx)
        except UserError as e:  # name the layer's type too: "layer 'x' (Type): why"
            bare = f"layer {lp.name!r}: "
            message = f"layer {lp.name!r} ({lp.type}): {str(e)[len(bare):]}" if str(e).startswith(bare) else str(e)
            raise UserError(message + self._darknet_hint()) from None
        if len(layer.top_shapes) != len(lp.top):
            raise UserError(f"layer {lp.name!r} ({lp.type}): has {len(lp.top)} tops, the layer type produces "
                            f"{len(layer.top_shapes)}")
        for top, shape in zip(lp.top, layer.top_shapes):
            shape = tuple(int(d) for d in shape)
            if any(d < 1 for d in shape):   # before anything is allocated for it
                raise UserError(f"layer {lp.name!r} ({lp.type}): top {top!r} would have shape {shape}; every "
                                "dimension must be at least 1 (check the layer's parameters against its bottom "
                                f"shapes {[self.blob_shapes[b] for b in lp.bottom]})")
            self.ctx.budget.charge(lp.name, f"top {top!r}", shape)
            self.blob_shapes[top] = shape
        if getattr(layer, "is_input", False):
            self.input_blobs.extend(lp.top)
        if lp.blobs:
            with about(f"layer {lp.name!r}"):
                layer.load_blobs([protoio.blob_to_array(b) for b in lp.blobs])
        self.layer_params.append(spec)
        self.layers.append(layer)

    def _darknet_hint(self) -> str:
        """A size error after a stride-1 pooling that shrinks its input (Darknet's 2x2/1 max pool, which keeps
        the size in the Darknet2Caffe fork) points at the darknet rule; "" otherwise or when it is on."""
        if self.ctx.pooling != POOLING_CAFFE:
            return ""
        shrinking = [lp.name for lp, layer in zip(self.layer_params, self.layers) if lp.type == "Pooling"
                     and layer.stride[0] == 1 and layer.darknet_rule_adds_window()]
        if not shrinking:
            return ""
        return (f"; stride-1 pooling {shrinking[0]!r} shrinks its input here but keeps its size in Darknet2Caffe "
                "nets (YOLO): try the darknet pooling rule (--pooling darknet)")

    def _net_outputs(self) -> list[str]:
        """Blobs produced and not consumed afterwards, in production order (Caffe's net outputs)."""
        available: dict[str, None] = {}
        for lp in self.layer_params:
            for b in lp.bottom:
                available.pop(b, None)
            for t in lp.top:
                available[t] = None
        return list(available)

    def _loss_weights(self) -> dict[str, float]:
        weights = {}
        for lp, layer in zip(self.layer_params, self.layers):
            for i, top in enumerate(lp.top):
                w = lp.loss_weight[i] if i < len(lp.loss_weight) else (layer.default_loss_weight if i == 0 else 0.0)
                if w:
                    weights[top] = float(w)
        return weights

    def _share_named_params(self) -> None:
        """ParamSpec.name: later layers use the first owner's blob (shape checked as Caffe does)."""
        owners: dict[str, tuple[str, torch.Tensor]] = {}
        for lp, layer in zip(self.layer_params, self.layers):
            for i, spec in enumerate(lp.param[:len(layer.blob_names)]):
                if not spec.name:
                    continue
                blob = layer.caffe_blobs[i]
                if spec.name not in owners:
                    owners[spec.name] = (lp.name, blob)
                    continue
                owner_layer, owner = owners[spec.name]
                same = (owner.shape == blob.shape if spec.share_mode == pb.ParamSpec.STRICT
                        else owner.numel() == blob.numel())
                if not same:
                    raise UserError(f"layer {lp.name!r}: shared param {spec.name!r} has shape {tuple(blob.shape)}, "
                                    f"its owner {owner_layer!r} has {tuple(owner.shape)}")
                setattr(layer, layer.blob_names[i], owner)

    # ------------------------------------------------------------- running
    def forward(self, inputs: torch.Tensor | Mapping[str, torch.Tensor] | None = None,
                outputs: Iterable[str] | str | None = None) -> dict[str, torch.Tensor]:
        """Run the net; return the requested blobs (default: the net outputs; "all": every blob)."""
        if isinstance(inputs, torch.Tensor):
            if len(self.input_blobs) != 1:
                raise UserError(f"net has inputs {self.input_blobs}; pass a dict of tensors")
            inputs = {self.input_blobs[0]: inputs}
        inputs = dict(inputs or {})
        wanted = self._wanted(outputs)
        blobs: dict[str, torch.Tensor] = {}
        for lp, layer in zip(self.layer_params, self.layers):
            if getattr(layer, "is_input", False):
                missing = [top for top in lp.top if top not in inputs]
                if missing:
                    raise UserError(f"input blob {missing[0]!r} was not given (inputs: {self.input_blobs})")
                tops = tuple(_as_blob(inputs[top]) for top in lp.top)
            else:
                result = layer(*[blobs[b] for b in lp.bottom])
                tops = result if isinstance(result, tuple) else (result,)
            if self.channels_last:   # a no-op for most tops; a 1-channel input makes conv1 pick the default layout
                tops = tuple(_channels_last(top) for top in tops)
            for name, value in zip(lp.top, tops):
                blobs[name] = value
        return {name: blobs[name] for name in wanted}

    def _wanted(self, outputs: Iterable[str] | str | None) -> list[str]:
        if outputs is None:
            return list(self.output_blobs)
        if outputs == "all":
            return list(self.blob_shapes)
        names = [outputs] if isinstance(outputs, str) else list(outputs)
        unknown = [n for n in names if n not in self.blob_shapes]
        if unknown:
            raise UserError(f"no blob named {unknown} in net {self.name!r}; blobs: {', '.join(self.blob_shapes)}")
        return names

    def loss(self, blobs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The objective: sum of loss-weighted blobs (Caffe's Net::ForwardBackward loss)."""
        total = torch.zeros((), device=next(iter(blobs.values())).device if blobs else None)
        for name, weight in self.loss_weights.items():
            total = total + weight * blobs[name].sum()
        return total

    # ------------------------------------------------------------- weights
    def layer(self, name: str) -> CaffeLayer:
        """The layer module with the given Caffe name."""
        for lp, layer in zip(self.layer_params, self.layers):
            if lp.name == name:
                return layer
        raise UserError(f"no layer named {name!r} in net {self.name!r}")

    def named_layers(self) -> Iterable[tuple[pb.LayerParameter, CaffeLayer]]:
        """(LayerParameter, module) pairs in net order."""
        return zip(self.layer_params, self.layers)

    def load_weights(self, source: pb.NetParameter | str | os.PathLike) -> dict[str, list[str]]:
        """Copy blobs by layer name from a caffemodel; return the loaded, ignored and untouched layer names."""
        if not isinstance(source, pb.NetParameter):
            path = source
            try:
                return self.load_weights(protoio.read_caffemodel(path))
            except UserError as e:
                message = str(e)
                raise UserError(message if message.startswith(str(path)) else f"{path}: {message}") from None
        ours = {lp.name: layer for lp, layer in self.named_layers()}
        report: dict[str, list[str]] = {"loaded": [], "ignored": [], "untouched": []}
        for src in source.layer:
            if src.name not in ours:
                if src.blobs:
                    report["ignored"].append(src.name)
                continue
            if src.blobs or ours[src.name].blob_names:
                with about(f"layer {src.name!r}"):
                    ours[src.name].load_blobs([protoio.blob_to_array(b) for b in src.blobs])
                report["loaded"].append(src.name)
        loaded = set(report["loaded"])
        report["untouched"] = [n for n, layer in ours.items() if layer.blob_names and n not in loaded]
        return report

    def learnable_blobs(self) -> list[LearnableBlob]:
        """Every distinct blob with its lr_mult / decay_mult, in Caffe's learnable_params_ order."""
        seen: set[int] = set()
        out = []
        for lp, layer in self.named_layers():
            for i, (blob, spec) in enumerate(zip(layer.caffe_blobs, layer.param_specs())):
                if id(blob) in seen:
                    continue
                seen.add(id(blob))
                out.append(LearnableBlob(lp.name, i, blob, spec.lr_mult, spec.decay_mult))
        return out

    def share_blobs_from(self, other: "Net") -> None:
        """Use another net's blobs for layers of the same name (Caffe's test net shares the train net's)."""
        theirs = {lp.name: layer for lp, layer in other.named_layers()}
        for lp, layer in self.named_layers():
            src = theirs.get(lp.name)
            if src is None or not layer.blob_names:
                continue
            for name, blob in zip(layer.blob_names, src.caffe_blobs):
                if blob.shape != getattr(layer, name).shape:
                    raise UserError(f"layer {lp.name!r}: cannot share blob {name} of shape {tuple(blob.shape)}")
                setattr(layer, name, blob)

    def to_proto(self) -> pb.NetParameter:
        """The net with its current weights as a NetParameter (what a .caffemodel holds)."""
        out = pb.NetParameter(name=self.name)
        for lp, layer in self.named_layers():
            dst = out.layer.add()
            dst.CopyFrom(lp)
            dst.phase = self.ctx.phase
            for arr in layer.blob_arrays():
                protoio.array_to_blob(arr, into=dst.blobs.add())
        return out

    def save_caffemodel(self, path: str | os.PathLike) -> None:
        """Write the weights as a .caffemodel Caffe can read (atomic)."""
        protoio.write_caffemodel(path, self.to_proto())

    @classmethod
    def from_files(cls, prototxt: str | os.PathLike, weights: str | os.PathLike | None = None,
                   phase: int = pb.TEST, **kwargs) -> "Net":
        """Build from a prototxt and optionally load a caffemodel; errors name the prototxt."""
        with about(prototxt):
            net = cls(protoio.read_net(prototxt), phase, **kwargs)
            if weights is not None:
                net.load_weights(weights)
        return net


@functools.cache
def bottom_range(cls: type) -> tuple[int, int | None]:
    """(fewest, most or None) bottoms a layer class takes: its forward's positional parameters (or min_bottoms)."""
    params = list(inspect.signature(cls.forward).parameters.values())[1:]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = sum(p.default is p.empty for p in positional)
    variadic = any(p.kind == p.VAR_POSITIONAL for p in params)
    return getattr(cls, "min_bottoms", required), None if variadic else len(positional)


def _check_bottom_count(cls: type, lp: pb.LayerParameter) -> None:
    fewest, most = bottom_range(cls)
    if not fewest <= len(lp.bottom) <= (most if most is not None else len(lp.bottom)):
        expected = f"{fewest}" if fewest == most else f"{fewest} to {most}" if most is not None else f"at least {fewest}"
        raise UserError(f"layer {lp.name!r} ({lp.type}): has {len(lp.bottom)} bottoms, the layer type takes {expected}")


def _as_blob(value) -> torch.Tensor:
    """An input as a tensor: floating torch tensors keep their dtype (float64 gradchecks), all else is float32."""
    if isinstance(value, torch.Tensor):
        return value if value.is_floating_point() else value.float()   # stays on its device
    return torch.as_tensor(np.asarray(value), dtype=torch.float32)


def _channels_last(blob: torch.Tensor) -> torch.Tensor:
    """A 4-D blob in channels_last layout; any other blob as it is."""
    return blob.contiguous(memory_format=torch.channels_last) if blob.dim() == 4 else blob


def numpy_blobs(blobs: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Blobs as numpy arrays (detached, on the CPU)."""
    return {k: v.detach().cpu().numpy() for k, v in blobs.items()}
