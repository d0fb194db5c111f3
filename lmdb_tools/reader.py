"""A PyTorch Dataset over a Caffe LMDB (raw, encoded or float_data Datums), safe in DataLoader workers."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from convert import caffe_pb2 as pb
from lmdb_tools.datum import datum_to_array, parse_datum
from lmdb_tools.db import open_readonly, read_keys
from lmdb_tools.transformer import DataTransformer


class LMDBDataset(Dataset):
    """Records of an LMDB by index (in key order, Caffe's read order): (image, label).

    The image is the DataTransformer's float32 CHW output when a transformer is given, else the
    stored CHW array (uint8, or float32 for float_data). The environment is opened read-only, with
    no lock file, lazily in each process that reads (so fork and spawn workers each get their own),
    and one read transaction is kept open per process: nothing writes to a dataset being read.
    """

    def __init__(self, path: str | os.PathLike, transformer: DataTransformer | None = None):
        self.path = Path(path)
        self.keys: list[bytes] = read_keys(open_readonly(self.path))
        self.transformer = transformer
        self._pid: int | None = None
        self._txn = None

    def __len__(self) -> int:
        return len(self.keys)

    def __getstate__(self) -> dict:
        # An open environment cannot cross a process boundary; the receiving process reopens it.
        return {**self.__dict__, "_pid": None, "_txn": None}

    def _open(self):
        if self._pid != os.getpid():
            self._txn = open_readonly(self.path).begin(buffers=False)
            self._pid = os.getpid()
            worker = get_worker_info()
            if worker is not None and self.transformer is not None:
                self.transformer.reseed(worker.seed)   # distinct crop/mirror draws per worker
        return self._txn

    def datum(self, index: int) -> pb.Datum:
        """The Datum stored at position index (0 <= index < len)."""
        key = self.keys[index]
        value = self._open().get(key)
        return parse_datum(value, key, str(self.path))

    def array(self, index: int) -> np.ndarray:
        """The stored image at index as CHW (decoded if encoded), untransformed."""
        return datum_to_array(self.datum(index))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        datum = self.datum(index)
        if self.transformer is None:
            image = datum_to_array(datum).copy()   # writable, owned memory for torch
        else:
            image = self.transformer(self.transformer.from_datum(datum))
        return torch.from_numpy(image), int(datum.label)

    def close(self) -> None:
        """End this process's read transaction (a new one starts on the next read)."""
        if self._txn is not None and self._pid == os.getpid():
            self._txn.abort()
        self._pid = self._txn = None
