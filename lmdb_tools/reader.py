"""PyTorch Datasets over a Caffe LMDB (raw, encoded or float_data Datums), safe in DataLoader workers."""
from __future__ import annotations

import ctypes
import math
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from convert import caffe_pb2 as pb
from convert.errors import about
from lmdb_tools.datum import datum_to_array, key_text, parse_datum
from lmdb_tools.db import open_readonly, read_keys, reading
from lmdb_tools.transformer import DataTransformer

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> None:
    """Make glibc keep freed batch-sized blocks in this process's heap (called in DataLoader workers).

    A worker forked before the parent freed any large block starts with glibc's defaults: every
    batch-sized block (the crops, the pickled copy for the pipe) is mmapped afresh and returned to
    the kernel on free, so each batch page-faults its memory in again. On this project's VMs that
    tripled the worker's CPU per image (benchmarks/RESULTS.md, ## lmdb_tools).
    """
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)   # absent outside glibc: nothing to tune
    if mallopt is not None:
        mallopt(M_TRIM_THRESHOLD, 1 << 28)
        mallopt(M_MMAP_THRESHOLD, 1 << 25)   # blocks up to 32 MiB come from the heap


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
            if worker is not None:
                keep_freed_memory()
            if worker is not None and self.transformer is not None:
                self.transformer.reseed(worker.seed)   # distinct crop/mirror draws per worker
        return self._txn

    def datum(self, index: int) -> pb.Datum:
        """The Datum stored at position index (0 <= index < len)."""
        key = self.keys[index]
        with reading(self.path):
            value = self._open().get(key)
        return parse_datum(value, key, str(self.path))

    def where(self, index: int) -> str:
        """'DB: record KEY', for messages about the record at index."""
        return f"{self.path}: record {key_text(self.keys[index])}"

    def array(self, index: int) -> np.ndarray:
        """The stored image at index as CHW (decoded if encoded), untransformed."""
        with about(self.where(index)):
            return datum_to_array(self.datum(index))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        datum = self.datum(index)
        with about(self.where(index)):
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



class LMDBBatches(Dataset):
    """Whole batches of an LMDB by batch index, cropped where they are read, normalised where they are used.

    Item i is numpy (crops (B, C, h, w) in the stored dtype, uint8 for image data; labels (B,) int64;
    draws (B, 3) int64 of h_off, w_off, mirror): a quarter of float32's bytes to hand from a DataLoader
    worker to the main process, which dominates the cost on this project's VMs. Arrays, not tensors:
    passed through a worker's pipe as they are, they cost less here than torch's shared-memory
    hand-over (benchmarks/RESULTS.md). `finish(item)` subtracts the mean and scales in float32, giving
    (images, labels) exactly equal to the DataTransformer's output record by record; `loader(num_workers)`
    does both through a DataLoader with batch_size=None, so there is no per-record collate.
    Batch i holds records order[i*B : i*B+B], where order is key order, or with shuffle a permutation
    drawn from default_rng([seed, epoch]); the last batch is short unless drop_last. Batch i's crop and
    mirror draws come from the transformer reseeded with [seed, epoch, i] (this Dataset drives its
    transformer's stream), so a batch is the same whichever worker makes it and equals
    `transformer(image)` record by record after `transformer.reseed([seed, epoch, i])`.
    Call set_epoch before a DataLoader starts its workers (persistent workers keep their epoch).
    """

    def __init__(self, path: str | os.PathLike, batch_size: int, transformer: DataTransformer,
                 shuffle: bool = False, seed: int = 0, drop_last: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.records = LMDBDataset(path)
        self.batch_size = batch_size
        self.transformer = transformer
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Use epoch's record order (with shuffle) and crop/mirror draws."""
        self.epoch = epoch
        n = len(self.records)
        self.order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)

    def __len__(self) -> int:
        whole = len(self.records) / self.batch_size
        return math.floor(whole) if self.drop_last else math.ceil(whole)

    def indices(self, batch: int) -> np.ndarray:
        """Record positions (in key order) of the given batch."""
        if not 0 <= batch < len(self):
            raise IndexError(f"batch {batch} out of range (0..{len(self) - 1})")
        return self.order[batch * self.batch_size:(batch + 1) * self.batch_size]

    def __getitem__(self, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        positions = [int(k) for k in self.indices(batch)]
        datums = [self.records.datum(k) for k in positions]
        images = []
        for k, d in zip(positions, datums):
            with about(self.records.where(k)):
                images.append(self.transformer.from_datum(d))
        crops = np.empty((len(images), *self.transformer.output_shape(images[0].shape)), images[0].dtype)
        self.transformer.reseed([self.seed, self.epoch, batch])
        draws = self.transformer.crop_batch(images, crops)
        return crops, np.array([d.label for d in datums], np.int64), draws

    def finish(self, item: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        """(images float32 (B, C, h, w), labels int64) of one item (arrays, or tensors after default_convert)."""
        crops, labels, draws = (np.asarray(part) for part in item)
        images = self.transformer.normalise(crops.astype(np.float32), draws)
        return torch.from_numpy(images), torch.from_numpy(labels)

    def loader(self, num_workers: int = 0, **dataloader_args) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every batch in order, finished: DataLoader(self, batch_size=None, num_workers, ...) + finish."""
        batches = DataLoader(self, batch_size=None, collate_fn=as_is, num_workers=num_workers, **dataloader_args)
        for item in batches:
            yield self.finish(item)


def as_is(item):
    """A DataLoader collate_fn that hands items over unchanged (numpy arrays go through the pipe)."""
    return item
