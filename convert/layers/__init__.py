"""Built-in layer types; importing this package registers them (see convert.registry)."""
from convert.layers import common, data, loss, neuron, norm, shape, vision  # noqa: F401
from convert.layers import fork  # noqa: F401  (fork layers: SSD, SegNet, PSPNet, ShuffleNet, SENet, R-CNN)
