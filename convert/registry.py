"""The layer registry: Caffe type string -> PyTorch module class with Caffe's semantics.

As in Caffe, a layer type registers itself by name; an unknown type fails naming itself and the
supported ones. Layers that need other packages (the LMDB `Data` layer lives in lmdb_tools, which
imports convert, not the other way) register when their package is imported.
"""
from __future__ import annotations

from typing import Callable, TypeVar

from convert.errors import UserError

T = TypeVar("T", bound=type)

LAYERS: dict[str, type] = {}

# Types that live in other packages: importing the package registers them.
PROVIDED_ELSEWHERE = {"Data": "lmdb_tools"}


def register(*type_names: str) -> Callable[[T], T]:
    """Class decorator: make the class the implementation of the given Caffe type names."""
    def wrap(cls: T) -> T:
        for name in type_names:
            if name in LAYERS and LAYERS[name] is not cls:
                raise RuntimeError(f"layer type {name!r} registered twice")
            LAYERS[name] = cls
        return cls
    return wrap


def layer_class(type_name: str, layer_name: str = "?") -> type:
    """The class registered for a Caffe type; UserError naming the supported types otherwise."""
    import convert.layers  # noqa: F401  (registers the built-in layers)
    if type_name not in LAYERS and type_name in PROVIDED_ELSEWHERE:
        import importlib
        importlib.import_module(PROVIDED_ELSEWHERE[type_name])
    if type_name not in LAYERS:
        raise UserError(f"layer {layer_name!r}: unknown layer type {type_name!r}; supported: "
                        + ", ".join(sorted(LAYERS)))
    return LAYERS[type_name]
