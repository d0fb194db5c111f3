"""Built-in layer types; importing this package registers them (see convert.registry)."""
from convert.layers import common, data, loss, neuron, vision  # noqa: F401
