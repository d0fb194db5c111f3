"""The data-directory contract: the paper's image sides and the names of LMDBs and mean files in a data root.

`replicate data prepare` writes it, the embedded datasets write the same, the experiments read it:
    <split>_<S>_lmdb                 one LMDB per split and side S (raw Datums, convert_imageset's keys)
    <split>_<S>_mean.binaryproto     compute_image_mean's output of that LMDB (train's is the one used)
"""
from __future__ import annotations

from pathlib import Path

PAPER_SIZE = 227                        # CaffeNet's input side; the transforms' parameters are stated at it
CROP_SIZES = (240, 256, 288, 320)       # the Crop nets' resize sides S (Appendix A.2)
PAPER_SIZES = (PAPER_SIZE, *CROP_SIZES)  # every side the paper's networks read


def lmdb_path(root: Path, split: str, side: int) -> Path:
    """The LMDB of a split at side S."""
    return root / f"{split}_{side}_lmdb"


def mean_path(root: Path, split: str, side: int) -> Path:
    """The mean file of a split's LMDB at side S."""
    return root / f"{split}_{side}_mean.binaryproto"
