"""convert_imageset: a list file of `path label` lines -> an LMDB of Datums, byte-identical to Caffe's.

Facts reproduced from Caffe's tools/convert_imageset.cpp and util/io.cpp:
- keys are `%08d_<path as written in the list>`, the number being the line's index in the (shuffled)
  list, so a skipped image leaves a gap; records are put in that order;
- images are read with cv::imread (colour = BGR; --gray reads IMREAD_GRAYSCALE) and resized with
  cv::resize (INTER_LINEAR) only when both resize_height and resize_width are non-zero;
- raw Datums hold CHW uint8 bytes with `encoded: false` set explicitly;
- --encoded stores the file's own bytes when nothing changes (no resize, channels as asked, extension
  equal to the encoding), else re-encodes with cv::imencode('.' + encode_type); the encoding defaults
  to the file's extension. Encoded Datums carry channels/height/width of the stored image, as the
  Caffe that wrote tests/fixtures/caffe/lmdb/encoded_lmdb does.
Deviations, all deliberate: Caffe silently skips unreadable images, we stop with an error naming the
list line unless skip_bad is set; --shuffle uses numpy's permutation seeded by `seed` (deterministic,
but not Caffe's order, which comes from its own RNG); blank list lines are ignored.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import lmdb
import numpy as np
from tqdm import tqdm

from convert import caffe_pb2 as pb
from convert.errors import UserError
from convert.protoio import atomic_write
from lmdb_tools.datum import encoded_datum, image_to_datum
from lmdb_tools.db import open_writable, refuse_existing

COMMIT_EVERY = 1000          # records per LMDB transaction, as convert_imageset
PROGRESS_FILE = "progress.json"
INFO_FILE = "convert_imageset.json"  # next to data.mdb: the configuration that built the DB


@dataclass(frozen=True)
class ImagesetOptions:
    """convert_imageset's flags."""
    resize_height: int = 0
    resize_width: int = 0
    gray: bool = False
    shuffle: bool = False
    seed: int = 0
    encoded: bool = False
    encode_type: str = ""
    check_size: bool = False
    skip_bad: bool = False


@dataclass(frozen=True)
class ListEntry:
    """One line of a list file: where it came from, the image path as written, its label."""
    line_no: int
    path: str
    label: int


def read_list(list_file: str | os.PathLike) -> list[ListEntry]:
    """Parse `path label` lines (path may hold spaces: the label is after the last one)."""
    try:
        text = Path(list_file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{list_file}: no such list file") from None
    except (IsADirectoryError, UnicodeDecodeError) as e:
        raise UserError(f"{list_file}: not a text list file of `path label` lines ({e})") from None
    entries = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().rsplit(None, 1)
        if len(parts) != 2:
            raise UserError(f"{list_file}:{line_no}: {line.strip()!r} has no label; expected `path label`")
        try:
            label = int(parts[1])
        except ValueError:
            raise UserError(f"{list_file}:{line_no}: label {parts[1]!r} is not an integer; "
                            "expected `path label`") from None
        entries.append(ListEntry(line_no, parts[0], label))
    return entries


def ordered_entries(entries: Sequence[ListEntry], opts: ImagesetOptions) -> list[ListEntry]:
    """The list in write order: as given, or permuted by numpy with opts.seed (--shuffle)."""
    if not opts.shuffle:
        return list(entries)
    order = np.random.default_rng(opts.seed).permutation(len(entries))
    return [entries[i] for i in order]


def read_image(path: Path, opts: ImagesetOptions) -> np.ndarray | None:
    """cv::imread as Caffe's ReadImageToCVMat, resized when both sizes are given; None if unreadable."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if opts.gray else cv2.IMREAD_COLOR)
    if image is None:
        return None
    if opts.resize_height > 0 and opts.resize_width > 0:
        image = cv2.resize(image, (opts.resize_width, opts.resize_height), interpolation=cv2.INTER_LINEAR)
    return image


def encoding_for(path: str, opts: ImagesetOptions) -> str:
    """The encoding of an --encoded record: encode_type, else the file's extension (lower case)."""
    if opts.encode_type:
        return opts.encode_type.lower()
    return path.rsplit(".", 1)[-1].lower() if "." in path else ""


def make_record(root: str, entry: ListEntry, index: int, opts: ImagesetOptions) -> tuple[bytes, bytes] | str:
    """(key, serialized Datum) for one list entry, or a message saying why its image is unusable."""
    file_path = Path(root + entry.path)   # Caffe concatenates root and path as strings
    image = read_image(file_path, opts)
    if image is None:
        why = "missing file" if not file_path.exists() else "not an image OpenCV can read"
        return f"cannot read image {str(file_path)!r} ({why})"
    key = f"{index:08d}_{entry.path}".encode()
    if not (opts.encoded or opts.encode_type):
        return key, image_to_datum(image, entry.label).SerializeToString()
    encoding = encoding_for(entry.path, opts)
    unchanged = (image.ndim == 3) == (not opts.gray) and not opts.resize_height and not opts.resize_width
    ext = entry.path.rsplit(".", 1)[-1].lower() if "." in entry.path else ""
    if unchanged and (ext == encoding or (encoding == "jpg" and ext == "jpeg")):
        payload = file_path.read_bytes()
    else:
        ok, buf = cv2.imencode("." + encoding, image)
        if not ok:
            raise UserError(f"cannot encode images as {encoding!r}; use --encode_type png or jpg")
        payload = buf.tobytes()
    return key, encoded_datum(payload, image, entry.label).SerializeToString()


def _worker_init() -> None:
    cv2.setNumThreads(1)   # parallelism comes from the processes


def _record_job(job: tuple[str, ListEntry, int, ImagesetOptions]) -> tuple[bytes, bytes] | str:
    return make_record(*job)


def _records(root: str, jobs: list[tuple[ListEntry, int]], opts: ImagesetOptions,
             workers: int) -> Iterator[tuple[bytes, bytes] | str]:
    """make_record over jobs in order, in a process pool when workers > 1."""
    args = [(root, entry, index, opts) for entry, index in jobs]
    if workers <= 1:
        yield from map(_record_job, args)
        return
    # spawn, not fork: a forked child of a process whose OpenCV/OpenMP threads already ran can deadlock
    with mp.get_context("spawn").Pool(workers, initializer=_worker_init) as pool:
        yield from pool.imap(_record_job, args, chunksize=16)


def _fingerprint(root: str, list_file: Path, opts: ImagesetOptions) -> str:
    """Identifies a build, so an interrupted one only resumes with the same inputs and flags."""
    h = hashlib.sha1(list_file.read_bytes())
    h.update(json.dumps([root, asdict(opts)], sort_keys=True).encode())
    return h.hexdigest()


def convert_imageset(root: str | os.PathLike, list_file: str | os.PathLike, db: str | os.PathLike,
                     opts: ImagesetOptions = ImagesetOptions(), overwrite: bool = False,
                     workers: int = 1, progress: bool = True) -> dict:
    """Build the LMDB `db` as convert_imageset does; return its summary (counts, skipped lines).

    The DB is built in `.<name>.partial` next to `db` and renamed at the end. An interrupted build
    (Ctrl-C, crash) leaves that directory with its committed record count and resumes from it when
    run again with the same list and flags; bad input removes it.
    """
    root, list_file, target = str(root), Path(list_file), Path(db)
    refuse_existing(target, overwrite)
    order = ordered_entries(read_list(list_file), opts)
    tmp = target.parent / f".{target.name}.partial"
    fingerprint = _fingerprint(root, list_file, opts)
    state = _resume_state(tmp, fingerprint)
    summary = {"written": state["written"], "skipped": state["skipped"]}
    env = open_writable(tmp)
    try:
        first_shape = state.get("shape")
        jobs = [(entry, index) for index, entry in enumerate(order)][state["done"]:]
        bar = tqdm(total=len(order), initial=state["done"], disable=not progress, unit="img",
                   desc=f"convert_imageset {target.name}")
        txn = env.begin(write=True)
        for (entry, index), record in zip(jobs, _records(root, jobs, opts, workers)):
            if isinstance(record, str):
                if not opts.skip_bad:
                    raise UserError(f"{list_file}:{entry.line_no}: {record}; pass --skip-bad to skip it")
                summary["skipped"].append(entry.line_no)
            else:
                first_shape = _check_size(record[1], first_shape, list_file, entry, opts)
                txn.put(*record)
                summary["written"] += 1
            state["done"] = index + 1
            bar.update()
            if state["done"] % COMMIT_EVERY == 0:
                txn.commit()
                _save_state(tmp, fingerprint, state["done"], summary, first_shape)
                txn = env.begin(write=True)
        txn.commit()
        bar.close()
    except UserError:
        env.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except (OSError, lmdb.Error) as e:   # e.g. the disk filled up: the committed part stays for a rerun
        env.close()
        raise UserError(f"{target}: writing failed ({getattr(e, 'strerror', None) or e}); the records committed so "
                        f"far are kept in {tmp} and a rerun with the same list and flags resumes from them") from None
    except BaseException:
        env.close()   # keep the committed part: the next run resumes from it
        raise
    env.close()
    (tmp / PROGRESS_FILE).unlink(missing_ok=True)
    info = {"tool": "convert_imageset", "root": root, "list_file": str(list_file), **asdict(opts),
            "shuffle_rng": "numpy.random.default_rng(seed).permutation" if opts.shuffle else None,
            "records": summary["written"], "skipped_lines": summary["skipped"]}
    atomic_write(tmp / INFO_FILE, json.dumps(info, indent=1).encode())
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return summary


def _check_size(value: bytes, first_shape: list | None, list_file: Path, entry: ListEntry,
                opts: ImagesetOptions) -> list | None:
    """--check_size: every Datum must have the first one's channels x height x width."""
    if not opts.check_size:
        return first_shape
    datum = pb.Datum.FromString(value)
    shape = [datum.channels, datum.height, datum.width]
    if first_shape is not None and shape != first_shape:
        raise UserError(f"{list_file}:{entry.line_no}: image {entry.path!r} is {shape[0]}x{shape[1]}x{shape[2]} "
                        f"(CxHxW) but the first record is {'x'.join(map(str, first_shape))} (--check_size)")
    return first_shape or shape


def _resume_state(tmp: Path, fingerprint: str) -> dict:
    """The committed progress of an interrupted build with the same fingerprint, else a fresh start."""
    fresh = {"done": 0, "written": 0, "skipped": []}
    try:
        state = json.loads((tmp / PROGRESS_FILE).read_text())
    except (FileNotFoundError, ValueError):
        shutil.rmtree(tmp, ignore_errors=True)
        return fresh
    if state.get("fingerprint") != fingerprint:
        shutil.rmtree(tmp, ignore_errors=True)
        return fresh
    return state


def _save_state(tmp: Path, fingerprint: str, done: int, summary: dict, shape: list | None) -> None:
    state = {"fingerprint": fingerprint, "done": done, **summary, "shape": shape}
    atomic_write(tmp / PROGRESS_FILE, json.dumps(state).encode())
