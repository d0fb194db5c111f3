"""A per-layer table of a Net: layer, type, top shapes, parameters, multiply-adds (per input item).

Parameters are the elements of the blobs a layer stores (a blob shared through ParamSpec.name counts
once, at its first owner); BatchNorm's statistics count too, as the caffemodel stores them.
Multiply-adds are those of the linear layers (Convolution, Deconvolution, InnerProduct) and the
per-element products of Scale, for one item of the batch (axis 0); other layers count 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from convert import caffe_pb2 as pb
from convert.layers.base import Shape
from convert.net import Net


@dataclass
class LayerRow:
    """One line of the summary."""
    name: str
    type: str
    top_shapes: list[Shape]
    params: int
    macs: int


def _macs(lp: pb.LayerParameter, layer, bottoms: list[Shape]) -> int:
    """Multiply-adds of one layer for a single item of the batch."""
    tops = layer.top_shapes
    if lp.type == "Convolution":
        return math.prod(tops[0][1:]) * math.prod(layer.weight.shape[1:])
    if lp.type == "Deconvolution":
        return math.prod(bottoms[0][1:]) * math.prod(layer.weight.shape[1:])
    if lp.type == "InnerProduct":
        return math.prod(tops[0][1:]) * math.prod(bottoms[0][layer.axis:])
    if lp.type == "Scale":
        return math.prod(tops[0][1:])
    return 0


def summarize(net: Net) -> list[LayerRow]:
    """One row per layer of the net, in net order."""
    seen: set[int] = set()
    rows = []
    for lp, layer in net.named_layers():
        params = 0
        for blob in layer.caffe_blobs:
            if id(blob) not in seen:
                seen.add(id(blob))
                params += blob.numel()
        bottoms = [net.blob_shapes[b] for b in lp.bottom]
        rows.append(LayerRow(lp.name, lp.type, [tuple(s) for s in layer.top_shapes], params,
                             _macs(lp, layer, bottoms)))
    return rows


def format_table(rows: list[LayerRow], title: str = "") -> str:
    """The rows as an aligned text table with totals."""
    header = ("layer", "type", "top shapes", "params", "mult-adds")
    cells = [(r.name, r.type, "  ".join("x".join(map(str, s)) or "scalar" for s in r.top_shapes) or "-",
              f"{r.params:,}", f"{r.macs:,}") for r in rows]
    total = ("total", "", f"{len(rows)} layers", f"{sum(r.params for r in rows):,}", f"{sum(r.macs for r in rows):,}")
    table = [header, *cells, total]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    right = {3, 4}
    lines = ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
             for row in table]
    rule = "-" * len(lines[0])
    return "\n".join(([title] if title else []) + [lines[0], rule, *lines[1:-1], rule, lines[-1]])
