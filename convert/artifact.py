"""The PyTorch artifact: one .pt holding a converted Caffe model, loadable with one call.

    save_artifact("caffenet.pt", net, deploy_param, preprocessing={...})
    net = load_artifact("caffenet.pt")          # a convert.net.Net in TEST phase, weights loaded
    net.preprocessing                           # what to do to an image before net(x)

Contents (a plain dict, loadable with torch.load(weights_only=True)):
- "format": FORMAT;
- "prototxt": the deploy net as prototxt text (Input layers, TEST phase);
- "state": the weights keyed "<caffe layer name>.<blob index>" (e.g. "conv1.0" weight, "conv1.1" bias),
  Caffe's blob order and shapes, float32;
- "preprocessing": the data layer's transform (scale, mean values or the mean image as a tensor,
  crop size, BGR channel order), so preprocessing travels with the weights;
- "metadata": where it came from (source files, converter options);
- "pooling": the net's pooling output-size rule (convert.layers.base.POOLING_RULES; absent = "caffe").
"""
from __future__ import annotations

import io
import os
from typing import Mapping

import torch
from google.protobuf import text_format

from convert import caffe_pb2 as pb
from convert import protoio
from convert.errors import UserError
from convert.layers.base import POOLING_CAFFE
from convert.net import Net

FORMAT = "replicate-caffe-artifact/1"


def save_artifact(path: str | os.PathLike, net: Net, deploy_param: pb.NetParameter,
                  preprocessing: Mapping | None = None, metadata: Mapping | None = None) -> None:
    """Write the net's weights, its deploy prototxt and preprocessing as one .pt (atomic)."""
    state = {f"{lp.name}.{i}": blob.detach().cpu().float().clone()
             for lp, layer in net.named_layers() for i, blob in enumerate(layer.caffe_blobs)}
    payload = {"format": FORMAT, "prototxt": text_format.MessageToString(deploy_param), "state": state,
               "preprocessing": dict(preprocessing or {}), "metadata": dict(metadata or {}),
               "pooling": net.ctx.pooling}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    protoio.atomic_write(path, buffer.getvalue())


def read_artifact(path: str | os.PathLike) -> dict:
    """The artifact's dict, checked to be one."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except Exception as e:  # torch raises several types for non-.pt files
        raise UserError(f"{path}: not a PyTorch artifact ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path}: not a converted Caffe model (expected format {FORMAT!r})")
    return payload


def load_artifact(path: str | os.PathLike) -> Net:
    """The Net of an artifact, weights loaded, with `.preprocessing` and `.metadata` attached."""
    payload = read_artifact(path)
    net_param = protoio.parse_text_proto(payload["prototxt"], pb.NetParameter, source=f"{path}:prototxt")
    net = Net(net_param, pooling=payload.get("pooling", POOLING_CAFFE))
    state = payload["state"]
    for lp, layer in net.named_layers():
        if layer.blob_names:
            blobs = [state.get(f"{lp.name}.{i}") for i in range(len(layer.blob_names))]
            if any(b is None for b in blobs):
                raise UserError(f"{path}: layer {lp.name!r} has no weights in the artifact")
            layer.load_blobs([b.numpy() for b in blobs])
    net.eval()
    net.preprocessing = payload["preprocessing"]
    net.metadata = payload["metadata"]
    return net
