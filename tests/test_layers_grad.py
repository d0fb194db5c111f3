"""Backward by autograd: float64 gradchecks of the layers whose forward has custom formulas."""
import pytest

from layer_helpers import gradcheck_layer

CASES = {
    "max_pool_pad_shrink": ('type: "Pooling" pooling_param { pool: MAX kernel_size: 2 stride: 2 pad: 1 }', [(1, 2, 5, 5)]),
    "max_pool_ceil": ('type: "Pooling" pooling_param { pool: MAX kernel_size: 3 stride: 2 }', [(1, 2, 6, 6)]),
    "ave_pool_pad_shrink": ('type: "Pooling" pooling_param { pool: AVE kernel_size: 2 stride: 2 pad: 1 }', [(1, 2, 5, 5)]),
    "ave_pool_ceil": ('type: "Pooling" pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }', [(1, 2, 6, 6)]),
    "ave_pool_global": ('type: "Pooling" pooling_param { pool: AVE global_pooling: true }', [(2, 2, 3, 4)]),
    "lrn_across": ('type: "LRN" lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 }', [(1, 4, 3, 3)]),
    "lrn_within": ('type: "LRN" lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 norm_region: WITHIN_CHANNEL }',
                   [(1, 2, 4, 4)]),
    "batchnorm_train": ('type: "BatchNorm" batch_norm_param { eps: 0.001 }', [(3, 2, 2, 2)]),
    "scale_bias_term": ('type: "Scale" scale_param { bias_term: true filler { type: "gaussian" std: 1 } '
                        'bias_filler { type: "gaussian" std: 1 } }', [(2, 3, 2, 2)]),
    "scale_bottom": ('type: "Scale" scale_param { axis: 1 }', [(2, 3, 2, 2), (3, 2)]),
    "bias": ('type: "Bias" bias_param { filler { type: "gaussian" std: 1 } }', [(2, 3, 2)]),
    "bias_bottom": ('type: "Bias" bias_param { axis: 0 }', [(2, 3, 2), (2, 3)]),
}


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny tensors: a thread pool only adds waiting


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradcheck(case):
    assert gradcheck_layer(*CASES[case])
