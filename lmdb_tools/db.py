"""Opening Caffe LMDBs: read-only without a lock file, or a new one built under a temporary name."""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import lmdb

from convert.errors import UserError
from lmdb_tools import mdbcheck

# LMDB reserves address space, not disk: a large map size costs nothing until written.
MAP_SIZE = 1 << 40


# py-lmdb allows one open environment per file per process, so all readers share it, keyed by
# (st_dev, st_ino) of data.mdb (a DB rebuilt at the same path is a new file). A forked child
# (DataLoader worker) inherits it and keeps using it: LMDB's rule against using an environment
# across fork() protects its lock table, and lock=False has none; a spawned child opens its own.
_READERS: dict[tuple[int, int], lmdb.Environment] = {}


def open_readonly(path: str | os.PathLike) -> lmdb.Environment:
    """This process's read-only, lock-free environment of an LMDB directory (shared; do not close it)."""
    path = Path(path)
    data = path / "data.mdb"
    if not data.is_file():
        what = "does not exist" if not path.exists() else "is not an LMDB (no data.mdb inside)"
        raise UserError(f"{path}: {what}; expected an LMDB directory written by convert_imageset")
    st = data.stat()
    ident = (st.st_dev, st.st_ino)
    if ident not in _READERS:
        mdbcheck.check(path)   # LMDB trusts its file: a damaged one would crash this process
        try:
            _READERS[ident] = lmdb.open(str(path), readonly=True, lock=False, subdir=True,
                                        readahead=False, max_readers=1024)
        except lmdb.Error as e:
            raise UserError(f"{path}: is not an LMDB ({e})") from None
    return _READERS[ident]


def read_keys(env: lmdb.Environment) -> list[bytes]:
    """All keys in LMDB order (byte order, which is Caffe's read order)."""
    with reading(env.path()), env.begin(buffers=False) as txn:
        return list(txn.cursor().iternext(keys=True, values=False))


@contextmanager
def reading(path: str | os.PathLike) -> Iterator[None]:
    """What LMDB itself finds wrong while reading (it checks some page types) as a UserError naming the DB."""
    try:
        yield
    except lmdb.Error as e:
        raise UserError(f"{path}: corrupt LMDB ({e}); rebuild it (e.g. `replicate lmdb create`)") from None


def refuse_existing(target: Path, overwrite: bool) -> None:
    """UserError if target exists and overwriting was not asked for."""
    if target.exists() and not overwrite:
        raise UserError(f"{target}: already exists; pass --overwrite to replace it")


@contextmanager
def building(target: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory next to target; on success it replaces target, on failure it is removed."""
    target = Path(target)
    refuse_existing(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except (OSError, lmdb.Error) as e:   # a full or read-only disk: one line, nothing half-written left
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"{target}: cannot write the LMDB ({getattr(e, 'strerror', None) or e})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def open_writable(path: Path) -> lmdb.Environment:
    """Create a new LMDB directory for writing."""
    try:
        return lmdb.open(str(path), map_size=MAP_SIZE, subdir=True, meminit=False, map_async=True)
    except lmdb.Error as e:
        raise UserError(f"{path}: cannot create an LMDB here ({e})") from None
