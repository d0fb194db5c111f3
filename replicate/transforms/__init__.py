"""The paper's input transformations (Appendix A) as the authors applied them: FAMILIES["rotation"] etc.

Training: `FAMILIES[name].sampler(config, size)(image, rng)` for a Table 3 config such as {"t": 10}.
Measurement: `for setting in FAMILIES[name].measurement_grid(size): family.apply(image, **setting.params)`.
"""
from replicate.transforms.families import FAMILIES
from replicate.transforms.family import REFERENCE_SIZE, Family, Param, Setting

__all__ = ["FAMILIES", "REFERENCE_SIZE", "Family", "Param", "Setting"]
