"""A transform family as data: parameters with units, Table 3 training ranges, measurement grid, size rule."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from convert.errors import UserError
from lmdb_tools.layout import PAPER_SIZE as REFERENCE_SIZE  # parameters are stated at the paper's input side


def parse_bool(text: str) -> bool:
    """'true'/'1'/'yes' or 'false'/'0'/'no'."""
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise ValueError(f"{text!r} is not a boolean")


def parse_ints(text: str) -> tuple[int, ...]:
    """Comma-separated integers."""
    return tuple(int(v) for v in text.split(","))


@dataclass(frozen=True)
class Param:
    """One keyword argument of a family's apply(): its unit, meaning and how the CLI parses it."""
    name: str
    unit: str
    help: str
    parse: Callable[[str], Any] = float
    choices: tuple[str, ...] = ()
    minimum: float | None = None


@dataclass(frozen=True)
class Setting:
    """One fixed transform of a measurement grid: its x-axis label and its apply() parameters."""
    label: str
    params: dict


# draw(config, rng, channels, size) -> one image's apply() parameters, already scaled to `size`;
# grid(config, size) and reference_params(config, size) likewise return parameters at `size`.
Draw = Callable[[dict, np.random.Generator, int, int], dict]


@dataclass(frozen=True)
class Family:
    """A transform family: apply(image, **params) plus its training sampler and measurement grid."""
    name: str
    title: str
    description: str
    size_rule: str
    params: tuple[Param, ...]
    apply_fn: Callable[..., np.ndarray]
    training: tuple[dict, ...]
    draw: Draw
    grid: Callable[[dict, int], list[Setting]]
    reference_params: Callable[[dict, int], dict]
    scale: Callable[[dict, float], dict] = lambda params, k: dict(params)
    default_config: dict = field(default_factory=dict)

    def apply(self, image: np.ndarray, **params: Any) -> np.ndarray:
        """The transform with literal parameters (pixel units of this image)."""
        known = {p.name: p for p in self.params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise UserError(f"{self.name}: unknown parameter(s) {', '.join(unknown)}; "
                            f"expected {', '.join(known) or 'none'}")
        for name, value in params.items():
            p = known[name]
            if p.choices and value not in p.choices:
                raise UserError(f"{self.name}: {name}={value!r}, expected one of {', '.join(p.choices)}")
            if p.minimum is not None and value < p.minimum:
                raise UserError(f"{self.name}: {name}={value}, expected >= {p.minimum}")
        return self.apply_fn(image, **params)

    def parse_param(self, text: str) -> tuple[str, Any]:
        """Parse a CLI 'NAME=VALUE' into (name, typed value)."""
        name, sep, value = text.partition("=")
        known = {p.name: p for p in self.params}
        if not sep or name not in known:
            raise UserError(f"--param {text!r}: expected NAME=VALUE with NAME one of "
                            f"{', '.join(known) or '(none: this family has no parameters)'}")
        try:
            return name, known[name].parse(value)
        except ValueError as e:
            raise UserError(f"--param {text!r}: {e}") from None

    def scaled(self, params: dict, size: int) -> dict:
        """Parameters stated at 227 px mapped to a size x size input (see size_rule)."""
        return self.scale(params, size / REFERENCE_SIZE)

    def sampler(self, config: dict, size: int = REFERENCE_SIZE) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
        """The training augmentation of one Table 3 network: image, rng -> randomly transformed image."""
        config = {**self.default_config, **config}

        def sample(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            channels = 1 if image.ndim == 2 else image.shape[2]
            return self.apply_fn(image, **self.draw(config, rng, channels, size))
        return sample

    def measurement_grid(self, size: int = REFERENCE_SIZE, config: dict | None = None) -> list[Setting]:
        """The fixed transforms measured in Figs. 1, 7-9, scaled to size (same for every image)."""
        return self.grid({**self.default_config, **(config or {})}, size)

    def reference(self, size: int = REFERENCE_SIZE, config: dict | None = None) -> dict:
        """Parameters of the untransformed input the grid is compared with (identity; crop: centre crop)."""
        return self.reference_params({**self.default_config, **(config or {})}, size)
