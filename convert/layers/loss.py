"""Loss and metric layers: SoftmaxWithLoss, EuclideanLoss, Accuracy."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from convert import caffe_pb2 as pb
from convert.errors import UserError
from convert.layers.base import CaffeLayer, NetContext
from convert.layers.common import canonical_axis
from convert.registry import register

FLT_MIN = float(np.finfo(np.float32).tiny)


def _check_labels(param: pb.LayerParameter, axis: int, bottom_shapes) -> None:
    """One label per (outer, inner) position of the scores, as Caffe's loss and accuracy layers check."""
    scores, labels = tuple(bottom_shapes[0]), tuple(bottom_shapes[1])
    positions = math.prod(scores[:axis]) * math.prod(scores[axis + 1:])
    if math.prod(labels) != positions:
        raise UserError(f"layer {param.name!r}: {math.prod(labels)} labels {labels} for {positions} score positions "
                        f"{scores} (axis {axis}); they must match")


def _normalizer(lp: pb.LossParameter, outer: int, inner: int, valid: torch.Tensor) -> torch.Tensor | float:
    """Caffe's LossLayer::GetNormalizer, floored at 1."""
    mode = lp.normalization
    if not lp.HasField("normalization") and lp.HasField("normalize"):
        mode = pb.LossParameter.VALID if lp.normalize else pb.LossParameter.BATCH_SIZE
    if mode == pb.LossParameter.FULL:
        return float(max(outer * inner, 1))
    if mode == pb.LossParameter.VALID:
        return valid.clamp(min=1) if lp.HasField("ignore_label") else float(max(outer * inner, 1))
    if mode == pb.LossParameter.BATCH_SIZE:
        return float(max(outer, 1))
    return 1.0


@register("SoftmaxWithLoss")
class SoftmaxWithLoss(CaffeLayer):
    """-mean log softmax(x)[label] over (outer, inner) positions, Caffe's normalisation and ignore_label.

    Top 0 is the scalar loss; an optional top 1 is the softmax probabilities.
    """
    default_loss_weight = 1.0

    def __init__(self, param, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        self.axis = canonical_axis(param.softmax_param.axis, len(bottom_shapes[0]), param.name)
        _check_labels(param, self.axis, bottom_shapes)
        self.top_shapes = [()] + [tuple(bottom_shapes[0])] * (len(param.top) - 1)

    def forward(self, scores, labels):
        shape = scores.shape
        outer, inner = math.prod(shape[:self.axis]), math.prod(shape[self.axis + 1:])
        logp = F.log_softmax(scores, dim=self.axis).clamp(min=math.log(FLT_MIN))  # Caffe: log(max(p, FLT_MIN))
        logp = logp.movedim(self.axis, -1).reshape(outer * inner, shape[self.axis])
        target = labels.reshape(-1).long()
        lp = self.param.loss_param
        valid = torch.ones_like(target, dtype=torch.bool)
        if lp.HasField("ignore_label"):
            valid = target != lp.ignore_label
        picked = logp.gather(1, torch.where(valid, target, 0).unsqueeze(1)).squeeze(1)
        loss = -(picked * valid).sum() / _normalizer(lp, outer, inner, valid.sum())
        if len(self.param.top) > 1:
            return loss, F.softmax(scores, dim=self.axis)
        return loss


@register("EuclideanLoss")
class EuclideanLoss(CaffeLayer):
    """sum((a - b)^2) / (2 N)."""
    default_loss_weight = 1.0

    def __init__(self, param, bottom_shapes, ctx):
        super().__init__(param, bottom_shapes, ctx)
        if math.prod(bottom_shapes[0]) != math.prod(bottom_shapes[1]):
            raise UserError(f"layer {param.name!r}: bottoms {tuple(bottom_shapes[0])} and {tuple(bottom_shapes[1])} "
                            "differ in count")
        self.top_shapes = [()]

    def forward(self, a, b):
        return ((a - b.reshape(a.shape)) ** 2).sum() / a.shape[0] / 2.0


@register("Accuracy")
class Accuracy(CaffeLayer):
    """Fraction of positions whose label is among the top_k scores (ties count as correct, as in Caffe).

    An optional second top holds the accuracy per class.
    """

    def __init__(self, param, bottom_shapes, ctx):
        super().__init__(param, bottom_shapes, ctx)
        self.axis = canonical_axis(param.accuracy_param.axis, len(bottom_shapes[0]), param.name)
        _check_labels(param, self.axis, bottom_shapes)
        self.top_shapes = [()] + [(bottom_shapes[0][self.axis],)] * (len(param.top) - 1)

    def forward(self, scores, labels):
        ap = self.param.accuracy_param
        classes = scores.shape[self.axis]
        flat = scores.detach().movedim(self.axis, -1).reshape(-1, classes)
        target = labels.detach().reshape(-1).long()
        valid = torch.ones_like(target, dtype=torch.bool)
        if ap.HasField("ignore_label"):
            valid = target != ap.ignore_label
        true_score = flat.gather(1, torch.where(valid, target, 0).unsqueeze(1))
        correct = ((flat > true_score).sum(1) < ap.top_k) & valid
        accuracy = correct.sum().float() / valid.sum().clamp(min=1).float()
        if len(self.param.top) == 1:
            return accuracy
        per_class_total = torch.bincount(target[valid], minlength=classes).float()
        per_class_correct = torch.bincount(target[correct], minlength=classes).float()
        return accuracy, torch.where(per_class_total > 0, per_class_correct / per_class_total.clamp(min=1), 0.0)
