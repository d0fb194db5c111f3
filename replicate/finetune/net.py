"""The finetuning net of Eqs. 5-7, generated in Caffe's own terms from a trained net's resolved train_val.

Layout (the authors' fork, createEquivarianceNetwork: weight-shared branches, branch 0 untransformed):
  * branch 0 is the trained net (TRAIN and TEST Data layers, conv1 .. fc8, loss, accuracy) with one change:
    drop7 writes `fc7_dropout` instead of working in place, so fc7 after relu7 and before drop7 stays
    readable (fc8 reads fc7_dropout; every value is as before). Layer names are unchanged, so a Table 3
    caffemodel loads into it and its finetuned caffemodel into the Table 3 net;
  * branch j = 1..J (TRAIN only) has its own Data layer `data_g<j>` reading the same LMDB with the same
    batch size and transform_param (so the same records, in lockstep), and a copy of every layer from the
    data to relu7, blobs and layer names suffixed `_g<j>`; each parameter of the trained net exists once,
    shared across the branches by `param { name: "<layer>_w" / "<layer>_b" }`;
  * M_{g_j}(r) = ReLU(r + W_j r + b_j) (Eq. 8) is `equiv_g<j>` (InnerProduct on fc7_g<j>; W_j, b_j filled
    with constant 0, so M starts as the identity plus ReLU; the authors' generator used an MSRA filler),
    `residual_g<j>` (Eltwise SUM with fc7_g<j>) and the in-place ReLU `relu_mapped_g<j>`: x'_j = mapped_g<j>;
  * x'_j goes through its own copy of drop7 and the classifier (`fc8_g<j>`, fc8's blobs by name).

The L2 terms compare fc7 after relu7 and before drop7, as the authors' code does (their branches end in
a non-in-place fc7 ReLU; dropout7 comes after, before the classifier), so they never measure two branches'
different drop7 masks: with those masks in the terms (tried at `mini`) the cheapest way to lower them is to
shrink phi, and accuracy collapsed to 15%. Dropout keeps the trained net's convention (caffe | paper, the
solver's `dropout`) in drop6 and drop7 of every branch; drop6 masks differ per branch, as Caffe draws them
per layer and the authors' net did.

fc8 is held fixed (lr_mult 0 wherever it is shared; `freeze_classifier=False` trains it). The paper does not
say either way: Section 5.4 "finetune[s] the representation" with Eq. 7, whose C is the classifier of
Eqs. 5-6, and Section 5.2 measures through the net's fixed classifier; a fixed C keeps Tables 2 and 4's
before/after numbers on one classifier. (The authors' generator gives the shared fc8 lr_mult 1 / 2.)

Eq. 7 in Caffe's losses. N = batch size, J = branches, phi = fc7 of branch 0, H = cross entropy:
    L = L_d + lambda3 L_e,  L_d = 1/N sum_i H(y_i, C(phi(x_i)))
    L_e = 1/(NJ) sum_i sum_j [H(y_i, C(x'_ij)) + lambda1 ||x'_ij - phi(x_i)||^2 + lambda2 ||phi(g_j x_i) - phi(x_i)||^2]
SoftmaxWithLoss is 1/N sum_i H (normalisation VALID, no ignore_label) and EuclideanLoss(a, b) is
1/(2N) sum_i ||a_i - b_i||^2, so one loss layer per term and branch sums (sum_k w_k loss_k) to Eq. 7 exactly with
    loss                    SoftmaxWithLoss(fc8, label)          w = 1
    loss_g<j>               SoftmaxWithLoss(fc8_g<j>, label)     w = lambda3 / J
    equivariance_loss_g<j>  EuclideanLoss(mapped_g<j>, fc7)      w = 2 lambda1 lambda3 / J   (2 undoes the 1/2)
    invariance_loss_g<j>    EuclideanLoss(fc7_g<j>, fc7)         w = 2 lambda2 lambda3 / J
Both bottoms of an EuclideanLoss get gradients (as in Caffe), so phi(x) moves towards phi(g x) too, as
minimising Eq. 7 over every parameter does.

lambda1 = 50/4096 and lambda2 = 25/4096 are per fc7 dimension: the authors' EuclideanLoss layers use
`normalize: true`, which in their fork divides by N * D instead of N, with loss weights 50 lambda3 / J and
25 lambda3 / J (so their effective lambdas are half the paper's, through Caffe's 1/2; we follow the paper's
Eq. 7). So lambda = numerator / D with D the trained net's fc7 width: the paper's values at `paper` scale
(D = 4096), the same weight per dimension at `mini` (D = 256) and `smoke`.

Random crop and mirror stay identical across branches without help: every Data layer of a net draws from
its own generator seeded with (net seed, phase), in the same order, one draw per image, so J+1 layers in
lockstep draw the same windows (the authors gave all branches one data and one transform seed). The fixed
transforms themselves are applied per branch in the `augment` hook by replicate.finetune.train (as in
Table 3, the augmentation is the one thing outside the prototxt); for the Crop family the transform is the
crop window, fixed per branch (branch 0: the centre, as the authors' crop branches [center, ul, ...]).
"""
from __future__ import annotations

from dataclasses import dataclass

from convert import caffe_pb2 as pb
from convert.errors import UserError

WEIGHTED_TYPES = ("Convolution", "InnerProduct", "Deconvolution")
# Caffe types that hold blobs which this generator would have to know the count of without ParamSpecs.
UNSHAREABLE_TYPES = ("BatchNorm", "Scale", "Bias", "PReLU", "Embed")
LOSS_TYPES = ("SoftmaxWithLoss", "EuclideanLoss", "Accuracy")
DROPPED = "_dropout"   # suffix of the blob a Dropout on phi writes (not in place here, see above)


@dataclass(frozen=True)
class Lambdas:
    """Eq. 6-7's weights: lambda1 (equivariance), lambda2 (invariance), lambda3 (L_e against L_d)."""
    lambda1: float
    lambda2: float
    lambda3: float

    @staticmethod
    def per_dimension(dim: int, equivariance: float = 50.0, invariance: float = 25.0,
                      lambda3: float = 0.3) -> "Lambdas":
        """The paper's 50/4096, 25/4096, 0.3 for a `dim`-wide fc7 (numerators per dimension, see above)."""
        return Lambdas(equivariance / dim, invariance / dim, lambda3)


def loss_weights(lambdas: Lambdas, branches: int) -> dict[str, float]:
    """Caffe loss_weight per loss layer of a branch j that makes the net's total loss equal Eq. 7."""
    j = float(branches)
    return {"classification": lambdas.lambda3 / j,
            "equivariance": 2.0 * lambdas.lambda1 * lambdas.lambda3 / j,
            "invariance": 2.0 * lambdas.lambda2 * lambdas.lambda3 / j}


def _is_train(layer: pb.LayerParameter) -> bool:
    return any(r.phase == pb.TRAIN for r in layer.include)


def _is_test(layer: pb.LayerParameter) -> bool:
    return any(r.phase == pb.TEST for r in layer.include)


def _blob_count(layer: pb.LayerParameter) -> int:
    """Learnable blobs of a layer (Convolution / InnerProduct: weight and, with bias_term, bias)."""
    if layer.type in WEIGHTED_TYPES:
        param = layer.inner_product_param if layer.type == "InnerProduct" else layer.convolution_param
        return 2 if param.bias_term else 1
    if layer.type in UNSHAREABLE_TYPES:
        raise UserError(f"finetune: layer {layer.name!r} ({layer.type}) holds blobs the branches would have to "
                        f"share; only {', '.join(WEIGHTED_TYPES)} are supported")
    return len(layer.param)


def _name_params(layer: pb.LayerParameter, lr_mult: float | None = None) -> None:
    """Give every learnable blob its sharing name (<layer>_w, <layer>_b), keeping lr/decay multipliers."""
    count = _blob_count(layer)
    while len(layer.param) < count:
        layer.param.add()
    for i, spec in enumerate(layer.param[:count]):
        spec.name = spec.name or f"{layer.name}_{('w', 'b')[i] if i < 2 else f'p{i}'}"
        if lr_mult is not None:
            spec.lr_mult = lr_mult


def _train_only(layer: pb.LayerParameter) -> None:
    del layer.include[:]
    del layer.exclude[:]
    layer.include.add(phase=pb.TRAIN)


def split_net(net: pb.NetParameter, phi_blob: str = "fc7", classifier: str = "fc8") \
        -> tuple[pb.LayerParameter, list[pb.LayerParameter], pb.LayerParameter | None, int]:
    """(TRAIN Data layer, TRAIN layers from the data to phi_blob's ReLU, the Dropout on phi_blob or None, D)."""
    data = [l for l in net.layer if l.type == "Data" and _is_train(l)]
    if len(data) != 1 or len(data[0].top) != 2:
        raise UserError(f"finetune: net {net.name!r} needs one TRAIN Data layer with tops data, label "
                        f"(found {len(data)})")
    names = [l.name for l in net.layer]
    if classifier not in names:
        raise UserError(f"finetune: net {net.name!r} has no classifier layer {classifier!r}")
    trunk = [l for l in net.layer[:names.index(classifier)]
             if l.type != "Data" and not _is_test(l) and l.type not in LOSS_TYPES]
    producers = [l for l in trunk if phi_blob in l.top and l.type == "InnerProduct"]
    readers = [l for l in trunk if phi_blob in l.bottom]
    dropouts = [l for l in readers if l.type == "Dropout"]
    if not producers or any(l.type not in ("ReLU", "Dropout") or list(l.top) != [phi_blob] for l in readers) \
            or len(dropouts) > 1 or (dropouts and readers[-1] is not dropouts[0]):
        raise UserError(f"finetune: {phi_blob!r} must be an InnerProduct top followed only by in-place ReLU "
                        f"and at most one Dropout (last) before {classifier!r}")
    dropout = dropouts[0] if dropouts else None
    return data[0], [l for l in trunk if l is not dropout], dropout, int(producers[0].inner_product_param.num_output)


def finetune_net(trained: pb.NetParameter, branches: int, lambdas: Lambdas, *, phi_blob: str = "fc7",
                 classifier: str = "fc8", freeze_classifier: bool = True) -> pb.NetParameter:
    """The weight-shared finetuning net of Eq. 7 for `branches` transforms g_1..g_J (see the module docstring)."""
    if branches < 1:
        raise UserError(f"finetune: need at least one transformed branch, got {branches}")
    data, trunk, dropout, dim = split_net(trained, phi_blob, classifier)
    label, dropped = data.top[1], phi_blob + DROPPED
    out = pb.NetParameter()
    out.CopyFrom(trained)
    out.name = f"{trained.name}-finetune-J{branches}"
    shared = {l.name for l in trunk} | {classifier}
    for layer in out.layer:
        if layer.name in shared:
            _name_params(layer, 0.0 if layer.name == classifier and freeze_classifier else None)
        if layer.type == "SoftmaxWithLoss" and not _is_test(layer) and not layer.loss_weight:
            layer.loss_weight.append(1.0)   # L_d, stated explicitly
        if dropout is not None and layer.name == dropout.name:
            layer.top[:] = [dropped]        # phi before dropout stays readable for the L2 terms
        if dropout is not None and layer.name == classifier:
            layer.bottom[:] = [dropped]
    fc8 = next(l for l in out.layer if l.name == classifier)
    weights = loss_weights(lambdas, branches)
    for j in range(1, branches + 1):
        suffix = f"_g{j}"
        rename = lambda blob: blob if blob == label else blob + suffix
        copy = out.layer.add()
        copy.CopyFrom(data)
        copy.name = data.name + suffix
        del copy.top[:]
        copy.top.append(data.top[0] + suffix)   # the labels are branch 0's (same records)
        for layer in trunk:
            copy = out.layer.add()
            copy.CopyFrom(next(l for l in out.layer if l.name == layer.name))   # with the named params
            copy.name = layer.name + suffix
            copy.bottom[:] = [rename(b) for b in layer.bottom]
            copy.top[:] = [rename(t) for t in layer.top]
            _train_only(copy)
        phi_j, equiv, mapped = phi_blob + suffix, "equiv" + suffix, "mapped" + suffix
        m = _add(out, equiv, "InnerProduct", [phi_j], [equiv])
        m.inner_product_param.num_output = dim
        m.inner_product_param.weight_filler.type = "constant"   # W = 0: M starts as identity + ReLU
        m.inner_product_param.bias_filler.type = "constant"
        m.param.add(lr_mult=1, decay_mult=1)   # the authors' generator's multipliers (no decay is used here)
        m.param.add(lr_mult=2, decay_mult=0)
        _add(out, "residual" + suffix, "Eltwise", [equiv, phi_j], [mapped]).eltwise_param.operation = \
            pb.EltwiseParameter.SUM
        _add(out, "relu_mapped" + suffix, "ReLU", [mapped], [mapped])
        head_input = mapped
        if dropout is not None:   # x' is classified through the net's own dropout, as phi(x) is
            drop = out.layer.add()
            drop.CopyFrom(dropout)
            drop.name, drop.bottom[:], drop.top[:] = dropout.name + suffix, [mapped], [mapped + DROPPED]
            _train_only(drop)
            head_input = mapped + DROPPED
        head = out.layer.add()
        head.CopyFrom(fc8)
        head.name, head.bottom[:], head.top[:] = classifier + suffix, [head_input], [classifier + suffix]
        _train_only(head)
        _add(out, "loss" + suffix, "SoftmaxWithLoss", [classifier + suffix, label], ["loss" + suffix],
             weights["classification"])
        _add(out, "equivariance_loss" + suffix, "EuclideanLoss", [mapped, phi_blob], ["equivariance_loss" + suffix],
             weights["equivariance"])
        _add(out, "invariance_loss" + suffix, "EuclideanLoss", [phi_j, phi_blob], ["invariance_loss" + suffix],
             weights["invariance"])
    return out


def _add(net: pb.NetParameter, name: str, kind: str, bottom: list[str], top: list[str],
         loss_weight: float | None = None) -> pb.LayerParameter:
    layer = net.layer.add(name=name, type=kind, bottom=bottom, top=top)
    if loss_weight is not None:
        layer.loss_weight.append(loss_weight)
    _train_only(layer)
    return layer


def branch_layer(name: str, branch: int) -> str:
    """The name of a trained-net layer (or its blob) in branch `branch` (0: unchanged)."""
    return name if branch == 0 else f"{name}_g{branch}"


def deploy_branches(net: pb.NetParameter, shapes: dict[str, tuple[int, ...]]) -> pb.NetParameter:
    """Every TRAIN branch as a deploy net: Data layers become Input layers of `shapes`, no loss layers.

    The form OpenCV's Caffe importer reads (it has no Data, SoftmaxWithLoss or EuclideanLoss layers): the
    branches, M and the shared classifier heads, at TEST (dropout off).
    """
    out = pb.NetParameter(name=net.name)
    for layer in net.layer:
        if _is_test(layer) or layer.type in LOSS_TYPES:
            continue
        if layer.type == "Data":
            top = layer.top[0]
            inp = out.layer.add(name=layer.name, type="Input", top=[top])
            inp.input_param.shape.add().dim.extend(shapes[top])
            continue
        copy = out.layer.add()
        copy.CopyFrom(layer)
        del copy.include[:]
    return out
