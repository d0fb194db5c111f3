"""Check a data.mdb before LMDB maps it: the C library trusts its file, so a damaged one crashes the process.

LMDB (0.9, 64-bit little-endian) checks only the meta pages' magic and version on open; a read
transaction then follows page numbers, node offsets and sizes with almost no bounds checks, so a
damaged page makes it read outside its map (SIGSEGV), past the end of the file (SIGBUS), divide
by a zero page size (SIGFPE) or fail an assertion (SIGABRT). `check` reads the file as LMDB will
(both meta pages, the newer one's main-database root, every branch and leaf page, every node, the
extent of every overflow run) with plain reads, and raises UserError naming the file and the page
at the first thing LMDB could not survive. A file that passes is safe to open and read in-process.
Overflow pages are bounds-checked, not read, so the check costs one read per branch/leaf page.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

from convert.errors import UserError

PAGEHDRSZ = 16                          # mp_pgno u64, mp_pad u16, mp_flags u16, mp_lower u16, mp_upper u16
P_BRANCH, P_LEAF, P_OVERFLOW, P_META, P_LEAF2 = 0x01, 0x02, 0x04, 0x08, 0x20
F_BIGDATA, F_SUBDATA, F_DUPDATA = 0x01, 0x02, 0x04
MAGIC, VERSION = 0xBEEFC0DE, 1
P_INVALID = (1 << 64) - 1
CURSOR_STACK = 32                       # LMDB's deepest cursor
_HEADER = struct.Struct("<QHHHH")
_META = struct.Struct("<IIQQ" + "IHHQQQQQ" * 2 + "QQ")   # MDB_meta after the page header
_NODE = struct.Struct("<HHHH")          # mn_lo, mn_hi, mn_flags, mn_ksize
NODESIZE = _NODE.size


class _File:
    """Page reads with pread: a file that shrinks gives short reads, never a signal."""

    def __init__(self, fd: int, size: int, source: str):
        self.fd, self.size, self.source = fd, size, source

    def read(self, offset: int, length: int, what: str) -> bytes:
        data = os.pread(self.fd, length, offset) if offset < self.size else b""
        if len(data) != length:
            raise self.error(f"{what} lies past the end of the file ({self.size} bytes)")
        return data

    def error(self, detail: str) -> UserError:
        return UserError(f"{self.source}: corrupt LMDB ({detail}); rebuild it (e.g. `replicate lmdb create`)")


def check(db_dir: str | os.PathLike) -> int:
    """Validate db_dir/data.mdb for reading; return its record count (UserError naming what is wrong)."""
    path = Path(db_dir) / "data.mdb"
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        raise UserError(f"{db_dir}: cannot read {path.name} ({e.strerror})") from None
    try:
        return _check(_File(fd, os.fstat(fd).st_size, str(db_dir)))
    finally:
        os.close(fd)


def _meta(f: _File, offset: int, index: int) -> dict:
    page = f.read(offset, PAGEHDRSZ + _META.size, f"meta page {index}")
    _, _, flags, _, _ = _HEADER.unpack_from(page)
    fields = _META.unpack_from(page, PAGEHDRSZ)
    if not flags & P_META or fields[0] != MAGIC:
        raise f.error(f"meta page {index} has no LMDB signature")
    if fields[1] != VERSION:
        raise f.error(f"meta page {index} has format version {fields[1]}, expected {VERSION}")
    free_db, main_db = fields[4:12], fields[12:20]
    return {"psize": free_db[0], "main_flags": main_db[1], "depth": main_db[2], "entries": main_db[6],
            "root": main_db[7], "last_pg": fields[20], "txnid": fields[21]}


def _check(f: _File) -> int:
    first = _meta(f, 0, 0)
    psize = first["psize"]
    if psize < 512 or psize > 65536 or psize & (psize - 1):
        raise f.error(f"page size {psize} is not a power of two in [512, 65536]")
    second = _meta(f, psize, 1)
    meta = second if second["txnid"] > first["txnid"] else first   # LMDB reads the newer one
    pages = meta["last_pg"] + 1
    if meta["last_pg"] < 1 or pages * psize > f.size:
        raise f.error(f"the meta page says {pages} pages of {psize} bytes, the file holds {f.size} bytes")
    if meta["main_flags"]:
        raise f.error(f"main database flags {meta['main_flags']:#x}: not a Caffe LMDB (plain keys, no duplicates)")
    if meta["root"] == P_INVALID:
        return _expect_entries(f, meta, 0)
    if not 1 <= meta["depth"] < CURSOR_STACK:
        raise f.error(f"tree depth {meta['depth']} (LMDB allows 1 to {CURSOR_STACK - 1})")
    return _expect_entries(f, meta, _walk(f, meta, psize, pages))


def _expect_entries(f: _File, meta: dict, found: int) -> int:
    if found != meta["entries"]:
        raise f.error(f"the meta page counts {meta['entries']} records, the tree holds {found}")
    return found


def _walk(f: _File, meta: dict, psize: int, pages: int) -> int:
    """Depth-first over the main tree in key order; every page once, leaves exactly at the tree's depth."""
    depth, seen, records, last_key = meta["depth"], set(), 0, None
    stack = [(meta["root"], 0)]
    while stack:
        pgno, level = stack.pop()
        if not 2 <= pgno < pages:
            raise f.error(f"page number {pgno} is outside pages 2..{pages - 1}")
        if pgno in seen:
            raise f.error(f"page {pgno} is reached twice")
        seen.add(pgno)
        page = f.read(pgno * psize, psize, f"page {pgno}")
        stored, _, flags, lower, upper = _HEADER.unpack_from(page)
        leaf = level == depth - 1
        kind = P_LEAF if leaf else P_BRANCH
        if stored != pgno or flags & (P_BRANCH | P_LEAF | P_OVERFLOW | P_META | P_LEAF2) != kind:
            raise f.error(f"page {pgno} (flags {flags:#x}, number {stored}) is not the "
                          f"{'leaf' if leaf else 'branch'} page the tree points to")
        if not PAGEHDRSZ <= lower <= upper <= psize or (lower - PAGEHDRSZ) % 2:
            raise f.error(f"page {pgno} has free-space bounds {lower}..{upper}")
        count = (lower - PAGEHDRSZ) // 2
        if count < (1 if leaf else 2):
            raise f.error(f"page {pgno} holds {count} nodes")
        children = []
        for i, ptr in enumerate(struct.unpack_from(f"<{count}H", page, PAGEHDRSZ)):
            where = f"page {pgno} node {i}"
            if not upper <= ptr <= psize - NODESIZE:
                raise f.error(f"{where} starts at offset {ptr}, outside {upper}..{psize - NODESIZE}")
            lo, hi, node_flags, ksize = _NODE.unpack_from(page, ptr)
            key_end = ptr + NODESIZE + ksize
            if key_end > psize:
                raise f.error(f"{where} has a {ksize}-byte key running past the page")
            if not leaf:
                children.append((lo | hi << 16 | node_flags << 32, level + 1))
                continue
            key = page[ptr + NODESIZE:key_end]
            if last_key is not None and key <= last_key:
                raise f.error(f"{where}: keys out of order")
            last_key = key
            _check_leaf(f, where, lo | hi << 16, node_flags, page, key_end, psize, pages)
            records += 1
        stack.extend(reversed(children))   # leftmost child next: key order
    return records


def _check_leaf(f: _File, where: str, size: int, flags: int, page: bytes, data_at: int, psize: int,
                pages: int) -> None:
    """A leaf node's value lies inside its page, or in an overflow run inside the file."""
    if flags & (F_SUBDATA | F_DUPDATA):
        raise f.error(f"{where} is a sub-database or duplicate-key node, which a Caffe LMDB never holds")
    if not flags & F_BIGDATA:
        if data_at + size > psize:
            raise f.error(f"{where} has a {size}-byte value running past the page")
        return
    if data_at + 8 > psize:
        raise f.error(f"{where} has an overflow page number running past the page")
    (first,) = struct.unpack_from("<Q", page, data_at)
    run = -(-(PAGEHDRSZ + size) // psize)
    if not 2 <= first or first + run > pages:
        raise f.error(f"{where} has a {size}-byte value on pages {first}..{first + run - 1}, outside "
                      f"pages 2..{pages - 1}")
