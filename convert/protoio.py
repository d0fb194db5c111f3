"""Read and write Caffe's files: prototxt (text), caffemodel / binaryproto / solverstate (binary).

Every reader upgrades what Caffe itself upgrades on load (V1 `layers`, net-level `input:`, data-layer
transformation fields), so the rest of the project only ever sees current-format NetParameters.
Writers are atomic: a temporary file in the target directory, renamed at the end.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Type, TypeVar

import numpy as np
from google.protobuf import text_format
from google.protobuf.message import DecodeError, Message

from convert import caffe_pb2 as pb
from convert.errors import UserError

M = TypeVar("M", bound=Message)

# V1 LayerType enum name -> current type string (Caffe's UpgradeV1LayerType).
V1_TYPE_NAMES = {
    "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution", "DATA": "Data", "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise",
    "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice",
    "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}

# V1 fields copied verbatim into the LayerParameter field of the same name.
_V1_PARAM_FIELDS = [
    f.name for f in pb.V1LayerParameter.DESCRIPTOR.fields
    if f.name.endswith("_param") and f.name in pb.LayerParameter.DESCRIPTOR.fields_by_name
]


# ------------------------------------------------------------------ files ---

def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes to path via a temporary file in the same directory and a rename.

    The file gets the mode open() would give it (0666 less the umask; mkstemp's is 0600). A full,
    read-only or missing directory is a UserError naming path, and no temporary file is left behind.
    """
    path, tmp = Path(path), None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        _discard(tmp)
        raise UserError(f"{path}: cannot write ({e.strerror or e})") from None
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp: str | None) -> None:
    if tmp is not None and os.path.lexists(tmp):
        os.unlink(tmp)


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (/proc/self/status)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _read_bytes(path: str | os.PathLike, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what} file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a {what} file") from None
    except OSError as e:   # unreadable, a dangling link, a name too long, ...
        raise UserError(f"{path}: cannot read the {what} file ({e.strerror or e})") from None


def read_text_proto(path: str | os.PathLike, message_cls: Type[M]) -> M:
    """Parse a text-format protobuf; a syntax error names file:line:column."""
    text = _read_bytes(path, "prototxt").decode("utf-8", errors="replace")
    return parse_text_proto(text, message_cls, source=str(path))


def parse_text_proto(text: str, message_cls: Type[M], source: str = "<string>") -> M:
    """Parse text-format protobuf from a string; errors name source:line:column."""
    msg = message_cls()
    try:
        text_format.Merge(text, msg)
    except text_format.ParseError as e:
        line, col = e.GetLine(), e.GetColumn()
        detail = str(e).split(" : ", 1)[-1]
        raise UserError(f"{source}:{line}:{col}: {detail}") from None
    return msg


def read_binary_proto(path: str | os.PathLike, message_cls: Type[M], what: str) -> M:
    """Parse a binary protobuf; a truncated or foreign file is reported as such."""
    data = _read_bytes(path, what)
    msg = message_cls()
    try:
        msg.ParseFromString(data)
    except DecodeError as e:
        raise UserError(f"{path}: not a valid {what} (truncated or corrupt: {e})") from None
    return msg


def write_text_proto(path: str | os.PathLike, msg: Message) -> None:
    """Write a message in text format, atomically."""
    atomic_write(path, text_format.MessageToString(msg).encode())


# -------------------------------------------------------------- net files ---

def read_net(path: str | os.PathLike) -> pb.NetParameter:
    """Read a .prototxt net definition and upgrade legacy formats (and the forks' ceil_mode)."""
    text = translate_ceil_mode(_read_bytes(path, "prototxt").decode("utf-8", errors="replace"), str(path))
    return upgrade_net(parse_text_proto(text, pb.NetParameter, source=str(path)), source=str(path))


def read_caffemodel(path: str | os.PathLike, pooling_field13: str = "round_mode") -> pb.NetParameter:
    """Read a binary .caffemodel (weights in layer.blobs) and upgrade legacy formats.

    pooling_field13: "round_mode" (BVLC, default) or "ceil_mode" for a caffemodel written by a fork whose
    PoolingParameter field 13 is the bool ceil_mode (the bytes cannot tell; the fork's prototxt can:
    prototxt_uses_ceil_mode). Explicit values are then read as round_mode: true = CEIL, false = FLOOR.
    """
    net = read_binary_proto(path, pb.NetParameter, "caffemodel")
    if not net.layer and not net.layers:
        raise UserError(f"{path}: not a valid caffemodel (no layers; truncated or another file type)")
    net = upgrade_net(net, source=str(path))
    if pooling_field13 == "ceil_mode":
        flipped = [lp.name for lp in net.layer if lp.pooling_param.HasField("round_mode")]
        for lp in net.layer:
            if lp.pooling_param.HasField("round_mode"):  # the bool's 1 (true) decodes as FLOOR (1)
                ceil = lp.pooling_param.round_mode == 1
                lp.pooling_param.round_mode = pb.PoolingParameter.CEIL if ceil else pb.PoolingParameter.FLOOR
        if flipped:
            warn(f"{path}: pooling layer(s) {', '.join(flipped[:5])}{' ...' if len(flipped) > 5 else ''} read with "
                 "PoolingParameter field 13 as the forks' bool ceil_mode (true = CEIL, false = FLOOR)")
    elif pooling_field13 != "round_mode":
        raise UserError(f"pooling_field13 must be 'round_mode' or 'ceil_mode', got {pooling_field13!r}")
    return net


# The forks' `ceil_mode: <bool>` (BVLC PR #3057, PoolingParameter field 13; DenseNet, ResNeXt files use it).
_CEIL_MODE = re.compile(r"\bceil_mode\s*:\s*(true|false|True|False|1|0)\b")


def warn(message: str) -> None:
    """A one-line warning on stderr."""
    print(f"warning: {message}", file=sys.stderr)


def prototxt_uses_ceil_mode(path: str | os.PathLike) -> bool:
    """Whether a prototxt uses the forks' bool ceil_mode (its caffemodel then stores field 13 as that bool)."""
    return bool(_CEIL_MODE.search(_read_bytes(path, "prototxt").decode("utf-8", errors="replace")))


def translate_ceil_mode(text: str, source: str = "<string>") -> str:
    """Prototxt text with the forks' `ceil_mode: true|false` as BVLC's `round_mode: CEIL|FLOOR` (same lines).

    BVLC's PoolingParameter field 13 is the enum round_mode (CEIL = 0, FLOOR = 1); the forks use field 13
    as a bool ceil_mode (default true). The meaning is kept and a one-line warning names the lines.
    """
    lines: list[int] = []

    def as_round_mode(m: re.Match) -> str:
        lines.append(text.count("\n", 0, m.start()) + 1)
        return "round_mode: " + ("CEIL" if m.group(1).lower() in ("true", "1") else "FLOOR")

    out = _CEIL_MODE.sub(as_round_mode, text)
    if lines:
        shown = ", ".join(map(str, lines[:5])) + (" ..." if len(lines) > 5 else "")
        warn(f"{source}: line(s) {shown}: the forks' bool ceil_mode (PoolingParameter field 13, BVLC PR #3057; "
             "BVLC's field 13 is round_mode) read as round_mode: true = CEIL, false = FLOOR")
    return out


def write_caffemodel(path: str | os.PathLike, net: pb.NetParameter) -> None:
    """Write a NetParameter with weights as a binary .caffemodel, atomically."""
    atomic_write(path, net.SerializeToString())


def read_solver(path: str | os.PathLike) -> pb.SolverParameter:
    """Read a solver.prototxt (legacy `solver_type` enum upgraded to the `type` string)."""
    solver = read_text_proto(path, pb.SolverParameter)
    if solver.HasField("solver_type") and not solver.HasField("type"):
        names = {0: "SGD", 1: "Nesterov", 2: "AdaGrad", 3: "RMSProp", 4: "AdaDelta", 5: "Adam"}
        solver.type = names[solver.solver_type]
    return solver


# ------------------------------------------------------------------ blobs ---

def blob_shape(blob: pb.BlobProto) -> tuple[int, ...]:
    """The shape of a BlobProto: `shape` if present, else the legacy 4-D fields."""
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim)
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        return (blob.num, blob.channels, blob.height, blob.width)
    n = len(blob.data) or len(blob.double_data)
    return (n,) if n else ()


def blob_to_array(blob: pb.BlobProto) -> np.ndarray:
    """A BlobProto's data as a float32 array of its shape (double_data is cast down)."""
    shape = blob_shape(blob)
    values = blob.double_data if len(blob.double_data) else blob.data
    arr = np.asarray(values, dtype=np.float32)
    if arr.size != int(np.prod(shape, dtype=np.int64)):
        raise UserError(f"blob holds {arr.size} values but its shape {shape} needs "
                        f"{int(np.prod(shape, dtype=np.int64))}")
    return arr.reshape(shape)


def array_to_blob(arr: np.ndarray, legacy_4d: bool = False, into: pb.BlobProto | None = None) -> pb.BlobProto:
    """A float array as a BlobProto (with `shape`, or the legacy 4-D fields for old readers).

    `into`: an empty BlobProto to fill (e.g. `layer.blobs.add()`), saving a copy of large blobs.
    """
    arr = np.asarray(arr, dtype=np.float32)
    blob = pb.BlobProto() if into is None else into
    if legacy_4d:
        dims = (1,) * (4 - arr.ndim) + arr.shape
        blob.num, blob.channels, blob.height, blob.width = (int(d) for d in dims)
    else:
        blob.shape.dim.extend(int(d) for d in arr.shape)
    blob.MergeFromString(_packed_floats(_BLOB_DATA_FIELD, arr))
    return blob


_BLOB_DATA_FIELD = pb.BlobProto.DESCRIPTOR.fields_by_name["data"].number


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _packed_floats(field_number: int, arr: np.ndarray) -> bytes:
    """A packed repeated float field in wire format: 30x faster than extend() for a 38M-value fc6."""
    payload = np.ascontiguousarray(arr, dtype="<f4").tobytes()
    return _varint(field_number << 3 | 2) + _varint(len(payload)) + payload


def read_binaryproto(path: str | os.PathLike) -> np.ndarray:
    """Read a .binaryproto BlobProto (e.g. a mean file) as a float32 array."""
    blob = read_binary_proto(path, pb.BlobProto, "binaryproto")
    try:
        return blob_to_array(blob)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None


def write_binaryproto(path: str | os.PathLike, arr: np.ndarray, legacy_4d: bool = True) -> None:
    """Write an array as a .binaryproto; 4-D legacy dims by default, as compute_image_mean does."""
    atomic_write(path, array_to_blob(arr, legacy_4d=legacy_4d).SerializeToString())


# ---------------------------------------------------------------- upgrade ---

def upgrade_net(net: pb.NetParameter, source: str = "<net>") -> pb.NetParameter:
    """Upgrade a NetParameter in place as Caffe's UpgradeNetAsNeeded does, and return it."""
    if net.layers:
        if net.layer:
            raise UserError(f"{source}: mixes legacy `layers` and current `layer` fields")
        _upgrade_v1_layers(net, source)
    _upgrade_data_transformation(net)
    _upgrade_net_input(net)
    return net


def _upgrade_v1_layers(net: pb.NetParameter, source: str) -> None:
    for v1 in net.layers:
        if v1.HasField("layer"):
            raise UserError(f"{source}: layer {v1.name!r} uses the V0 (2013) format, which is not supported")
        layer = net.layer.add()
        type_name = pb.V1LayerParameter.LayerType.Name(v1.type)
        if type_name not in V1_TYPE_NAMES:
            raise UserError(f"{source}: layer {v1.name!r} has legacy type {type_name} with no current equivalent")
        layer.name = v1.name
        layer.type = V1_TYPE_NAMES[type_name]
        layer.bottom.extend(v1.bottom)
        layer.top.extend(v1.top)
        layer.include.extend(v1.include)
        layer.exclude.extend(v1.exclude)
        layer.blobs.extend(v1.blobs)
        layer.loss_weight.extend(v1.loss_weight)
        n_specs = max(len(v1.param), len(v1.blobs_lr), len(v1.weight_decay), len(v1.blob_share_mode))
        for i in range(n_specs):
            spec = layer.param.add()
            if i < len(v1.param):
                spec.name = v1.param[i]
            if i < len(v1.blob_share_mode):
                spec.share_mode = v1.blob_share_mode[i]
            if i < len(v1.blobs_lr):
                spec.lr_mult = v1.blobs_lr[i]
            if i < len(v1.weight_decay):
                spec.decay_mult = v1.weight_decay[i]
        for field in _V1_PARAM_FIELDS:
            if v1.HasField(field):
                getattr(layer, field).CopyFrom(getattr(v1, field))
    del net.layers[:]


def _upgrade_data_transformation(net: pb.NetParameter) -> None:
    """Move the deprecated scale/mean_file/crop_size/mirror of data params into transform_param."""
    for layer in net.layer:
        for name in ("data_param", "image_data_param", "window_data_param"):
            if not layer.HasField(name):
                continue
            param = getattr(layer, name)
            for field in ("scale", "mean_file", "crop_size", "mirror"):
                if param.HasField(field):
                    setattr(layer.transform_param, field, getattr(param, field))
                    param.ClearField(field)


def _upgrade_net_input(net: pb.NetParameter) -> None:
    """Turn net-level `input:` / `input_dim:` / `input_shape` into a leading Input layer."""
    if not net.input:
        return
    layer = pb.LayerParameter(name="input", type="Input")
    layer.top.extend(net.input)
    for i, _ in enumerate(net.input):
        shape = layer.input_param.shape.add()
        if net.input_shape:
            shape.CopyFrom(net.input_shape[i])
        elif net.input_dim:
            shape.dim.extend(net.input_dim[4 * i:4 * i + 4])
    layers = [layer] + list(net.layer)
    del net.layer[:]
    net.layer.extend(layers)
    for field in ("input", "input_shape", "input_dim"):
        net.ClearField(field)
