"""`replicate convert NET.prototxt WEIGHTS.caffemodel --to onnx|pytorch --out FILE [--check]`: an old Caffe
model to ONNX (direct or through torch.onnx) or to a PyTorch artifact, checked blob by blob.

A train_val net is converted in its deploy form (TEST phase, Input instead of Data; the data
blob's shape from --input-shape or from the Data layer's first batch). With --check the converted
model runs (ONNX Runtime, CUDA provider when available) on the --reference fixture's inputs, or on
N(0, 1) inputs drawn with --seed, and every output blob is compared with our PyTorch net run in float64
(the exact reference), our float32 run, OpenCV's Caffe importer and the reference. A blob passes when the
converted model (and OpenCV, and the reference) is no further from float64 than 4x our float32 run is
(floor 1e-6 relative; convert.onnx_check); --tolerance T uses a fixed relative bound T instead. A failed
check exits with code 2 and writes nothing. --pooling darknet sizes pooling as the Darknet2Caffe fork
does (YOLO nets; the model's files cannot say which Caffe made them); it is recorded in the output.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from convert import protoio
from convert.errors import UserError
from replicate import options


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `convert`."""
    p = subparsers.add_parser("convert", help="an old Caffe model to ONNX or PyTorch, checked blob by blob",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("prototxt", type=Path, help="the net (deploy or train_val; legacy V1 is upgraded)")
    p.add_argument("caffemodel", type=Path, help="its weights")
    p.add_argument("--to", choices=["onnx", "pytorch"], required=True)
    p.add_argument("--route", choices=["direct", "torch"], default="direct",
                   help="onnx: write the graph from Caffe's definitions (direct) or export our PyTorch net (torch)")
    p.add_argument("--outputs", help="comma-separated blobs to expose (default: the net outputs)")
    p.add_argument("--fold-bn", action="store_true", help="fold BatchNorm (+Scale) into the convolution before it")
    p.add_argument("--input-shape", action="append", default=[], metavar="BLOB=N,C,H,W",
                   help="shape of an input blob (repeatable); default: the prototxt's")
    p.add_argument("--out", type=Path, required=True, help="output file (.onnx or .pt), written atomically")
    p.add_argument("--check", action="store_true", help="run the converted model and compare every output blob")
    p.add_argument("--reference", type=Path, help="a .npz of blobs (e.g. from Caffe's extract_features) to "
                   "compare with; its input blobs are the check's inputs")
    p.add_argument("--tolerance", type=float, default=None,
                   help="fixed max relative difference (e.g. 1e-5) instead of the default float64 rule")
    p.add_argument("--seed", type=int, default=0, help="seed of the random check inputs (without --reference)")
    options.add(p, ("pooling",))
    p.set_defaults(func=run)


def parse_shapes(items: list[str]) -> dict[str, tuple[int, ...]]:
    """`data=1,3,227,227` items as {blob: shape}."""
    shapes = {}
    for item in items:
        blob, _, dims = item.partition("=")
        try:
            shapes[blob.strip()] = tuple(int(d) for d in dims.split(","))
        except ValueError:
            raise UserError(f"--input-shape {item!r}: expected BLOB=N,C,H,W with integer dimensions") from None
        if not blob.strip() or any(d <= 0 for d in shapes[blob.strip()]):
            raise UserError(f"--input-shape {item!r}: expected BLOB=N,C,H,W with positive dimensions")
    return shapes


def _data_layer_shapes(net_param, prototxt: Path, missing: list[str], pooling: str) -> dict[str, tuple[int, ...]]:
    """Input shapes of a train_val net from its Data layers (one batch as the TEST net reads it)."""
    from convert.net import Net
    try:
        net = Net(net_param, root=prototxt.parent, pooling=pooling)
    except UserError as e:
        raise UserError(f"{prototxt}: cannot read the data layer to learn the input shape ({e}); give "
                        f"--input-shape {missing[0]}=N,C,H,W") from None
    return {b: net.blob_shapes[b] for b in missing}


def _read_reference(path: Path) -> dict[str, np.ndarray]:
    """The --reference .npz's blobs (UserError naming it when it is no readable .npz)."""
    import zipfile
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError("it is a single array, not an .npz of named blobs")
        with npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise UserError(f"{path}: cannot read a .npz of blobs ({e})") from None


def _preprocessing(net_param, prototxt: Path) -> dict:
    """The data layer's transform, with the mean image loaded when there is a mean file."""
    from convert.deploy import preprocessing
    prep = preprocessing(net_param)
    if prep.get("mean_file"):
        path = prototxt.parent / prep["mean_file"]
        if path.exists():
            import torch
            prep["mean"] = torch.from_numpy(protoio.read_binaryproto(path))
    return prep


def run(args: argparse.Namespace) -> int:
    """Convert, write, optionally check; print what was done."""
    from convert.deploy import data_blobs, deploy_net, input_shapes_of, test_phase
    from convert.net import Net

    net_param = protoio.read_net(args.prototxt)
    # A fork's prototxt with ceil_mode means its caffemodel stores PoolingParameter field 13 as that bool.
    field13 = "ceil_mode" if protoio.prototxt_uses_ceil_mode(args.prototxt) else "round_mode"
    weights = protoio.read_caffemodel(args.caffemodel, pooling_field13=field13)
    shapes = parse_shapes(args.input_shape)
    reference = _read_reference(args.reference) if args.reference else None
    test_net = test_phase(net_param)
    missing = [b for b in data_blobs(test_net) if b not in shapes and b not in input_shapes_of(test_net)]
    if missing and reference is not None and all(b in reference for b in missing):
        shapes.update({b: reference[b].shape for b in missing})
    elif missing:
        shapes.update(_data_layer_shapes(net_param, args.prototxt, missing, args.pooling))
    deploy = deploy_net(net_param, shapes)
    outputs = [o.strip() for o in args.outputs.split(",") if o.strip()] if args.outputs else None
    if outputs:  # keep only what they need, so a net converts up to a layer that cannot run (Python)
        from convert.deploy import prune_to_outputs
        deploy = prune_to_outputs(deploy, outputs)
    prep = _preprocessing(net_param, args.prototxt)
    config = {"prototxt": str(args.prototxt), "caffemodel": str(args.caffemodel), "to": args.to,
              "route": args.route, "outputs": outputs, "fold_bn": args.fold_bn,
              "input_shapes": {k: list(v) for k, v in shapes.items()}, "pooling": args.pooling}

    misfit = f"{args.caffemodel} does not fit {args.prototxt}"
    net = None
    if args.check or args.to == "pytorch" or args.route == "torch":
        net = Net(deploy, pooling=args.pooling)
        try:
            loaded = net.load_weights(weights)
        except UserError as e:
            raise UserError(f"{misfit}: {e}") from None
        if loaded["untouched"]:
            raise UserError(f"{misfit}: no weights for layer(s) {', '.join(loaded['untouched'])}")

    if args.to == "pytorch":
        _write_artifact(args, net, deploy, prep, config, outputs, reference)
        return 0
    meta = {"config": config, "preprocessing": {k: v for k, v in prep.items() if k != "mean"}}
    if args.route == "direct":
        from convert.onnx_direct import to_onnx
        model = to_onnx(deploy, weights, outputs=outputs, fold_bn=args.fold_bn, metadata=meta,
                        weights_source=misfit, pooling=args.pooling)
    else:
        from convert.onnx_torch import export
        model = export(_folded_net(deploy, weights, outputs or net.output_blobs, args.pooling) if args.fold_bn else net,
                       outputs, metadata=meta)
    import onnx
    onnx.checker.check_model(model, full_check=True)
    if args.check:  # a model that fails its check is not written
        from convert import onnx_check
        inputs, note = _check_inputs(args, net, reference)
        _report(args, onnx_check.check_onnx(model, net, inputs, opencv=(deploy, args.caffemodel),
                                            reference=reference, tolerance=args.tolerance), note)
    protoio.atomic_write(args.out, model.SerializeToString())
    print(f"wrote {args.out} (ONNX opset {model.opset_import[0].version}, route {args.route}, "
          f"outputs {', '.join(o.name for o in model.graph.output)})")
    return 0


def _write_artifact(args, net, deploy, prep, config, outputs, reference) -> None:
    """Save the artifact under a temporary name, reload and check it, then rename it into place."""
    import os

    import torch

    from convert import onnx_check
    from convert.artifact import load_artifact, save_artifact
    if args.fold_bn:
        raise UserError("--fold-bn applies to ONNX conversion; the PyTorch artifact keeps Caffe's layers")
    unknown = [o for o in outputs or [] if o not in net.blob_shapes]
    if unknown:
        raise UserError(f"output {unknown[0]!r} is no blob of net {net.name!r}; blobs: {', '.join(net.blob_shapes)}")
    unchecked = args.out.parent / f".{args.out.name}.unchecked"
    save_artifact(unchecked, net, deploy, prep, config)
    try:
        reloaded = load_artifact(unchecked)
        if args.check:
            inputs, note = _check_inputs(args, net, reference)
            with torch.no_grad():
                blobs = reloaded({k: torch.from_numpy(v) for k, v in inputs.items()},
                                 outputs=outputs or list(net.output_blobs))
            _report(args, onnx_check.check_blobs({k: v.numpy() for k, v in blobs.items()},
                                                 "the reloaded PyTorch artifact", net, inputs,
                                                 opencv=(deploy, args.caffemodel), reference=reference,
                                                 tolerance=args.tolerance), note)
        os.replace(unchecked, args.out)
    finally:
        unchecked.unlink(missing_ok=True)
    print(f"wrote {args.out} (PyTorch artifact: weights of {len(reloaded.learnable_blobs())} blobs, "
          "deploy prototxt, preprocessing)")


def _folded_net(deploy, weights, keep, pooling: str):
    """Our Net of the deploy net with BatchNorm (+Scale) folded into convolutions (for --route torch)."""
    from convert.net import Net
    from convert.onnx_direct import fold_batchnorm, weights_by_layer
    layers, folded_weights, _ = fold_batchnorm(list(deploy.layer), weights_by_layer(weights), set(keep))
    folded = type(deploy)()
    folded.CopyFrom(deploy)
    del folded.layer[:]
    folded.layer.extend(layers)
    net = Net(folded, pooling=pooling)
    net.load_weights(_as_model(folded, folded_weights))
    return net


def _check_inputs(args, net, reference) -> tuple[dict[str, np.ndarray], str]:
    """The reference's input blobs, or seeded N(0, 1) arrays of the input shapes; and a note saying which."""
    if reference is not None:
        missing = [b for b in net.input_blobs if b not in reference]
        if missing:
            raise UserError(f"{args.reference}: holds no input blob {missing[0]!r}")
        return {b: reference[b] for b in net.input_blobs}, f"inputs: {args.reference}"
    rng = np.random.default_rng(args.seed)
    return ({b: rng.standard_normal(net.blob_shapes[b]).astype(np.float32) for b in net.input_blobs},
            f"inputs: N(0, 1), seed {args.seed}")


def _report(args, report, note: str) -> None:
    """Print the table; a failed check is a UserError after it."""
    report.notes.insert(0, note)
    print(report.table())
    if not report.ok:
        bound = f"{args.tolerance:g} (relative)" if args.tolerance is not None else "the float64 rule's bound"
        raise UserError(f"check failed: {len(report.failed)} blob(s) differ by more than {bound}: "
                        f"{', '.join(report.failed)}; nothing written")


def _as_model(net_param, weights: dict[str, list[np.ndarray]]):
    """A caffemodel-like NetParameter holding the given weights (for Net.load_weights)."""
    out = type(net_param)()
    for lp in net_param.layer:
        if lp.name in weights:
            layer = out.layer.add(name=lp.name, type=lp.type)
            layer.blobs.extend(protoio.array_to_blob(a) for a in weights[lp.name])
    return out
