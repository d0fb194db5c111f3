"""A seeded mutation fuzzer over every file the toolkit reads: bad input must end in one line and exit 2.

    .venv/bin/python benchmarks/fuzz.py --cases 2000 --seed 0 --jobs 2 [--reader NAME ...] [--markdown OUT.md]

A case takes a fixture from tests/fixtures/, damages one file (bit flips, truncation, insertion,
deletion, duplicated ranges; token- and block-level edits of prototxts and solver files; field edits of
caffemodels, binaryprotos, solverstates, Datum records and JSON sidecars; page-level damage of data.mdb)
and runs the `replicate` command that reads it, in a child forked from this process (which imported
everything once), under a time limit (SIGALRM) and an address-space limit (RLIMIT_AS). A case passes
when the child exits 0 without a traceback, or exits 2 with exactly one stderr line that names the file.
Failures are kept (the case directory and stderr) under --keep. tests/test_fuzz.py runs a few hundred
cases in `make test` and thousands behind the slow marker; the counts are in benchmarks/RESULTS.md (.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

os.environ.setdefault("TQDM_DISABLE", "1")   # read when tqdm is imported: progress bars would fill stderr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIXTURES = ROOT / "tests" / "fixtures"
CAFFE = FIXTURES / "caffe"

MAX_NET_MEMORY = "1G"          # --max-memory of every command: the nets' blob estimate must stay under it
OUTCOMES_OK = ("exit 0", "exit 2")

INTERESTING_INTS = [0, 1, -1, 2, 3, 7, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 2**32,
                    2**63 - 1, -2**31, -2**63, 10**6, 10**9, 10**12]
INTERESTING_FLOATS = ["0", "-0.0", "1e30", "-1e30", "1e-30", "nan", "inf", "-inf", "0.5", "1e308", "-1"]


# ------------------------------------------------------------------ mutations ---

def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """One byte-level edit: bit flips, truncation, insertion, deletion, a duplicated range or a run of 0x00/0xff."""
    b = bytearray(data)
    if not b:
        return rng.randbytes(rng.randint(1, 16))
    op, i = rng.choice(["flip", "flip", "truncate", "insert", "delete", "duplicate", "overwrite"]), rng.randrange(len(b))
    if op == "flip":
        for _ in range(rng.randint(1, 8)):
            j = rng.randrange(len(b))
            b[j] ^= 1 << rng.randrange(8)
    elif op == "truncate":
        del b[i:]
    elif op == "insert":
        b[i:i] = rng.randbytes(rng.randint(1, 64))
    elif op == "delete":
        del b[i:i + rng.randint(1, 256)]
    elif op == "duplicate":
        b[rng.randrange(len(b)):0] = b[i:i + rng.randint(1, 256)]
    else:
        b[i:i + 8] = bytes([rng.choice([0x00, 0xFF, 0x7F, 0x80])]) * 8
    return bytes(b)


_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|[A-Za-z_][A-Za-z0-9_]*')


def proto_words() -> list[str]:
    """Every field and enum value name of caffe.proto, and every registered layer type: the vocabulary of edits."""
    import convert.layers  # noqa: F401
    import lmdb_tools  # noqa: F401
    from convert import caffe_pb2 as pb
    from convert.registry import LAYERS
    words: set[str] = set()
    for message in pb.DESCRIPTOR.message_types_by_name.values():
        stack = [message]
        while stack:
            m = stack.pop()
            words.update(f.name for f in m.fields)
            words.update(v.name for e in m.enum_types for v in e.values)
            stack.extend(m.nested_types)
    return sorted(words | set(LAYERS))


def mutate_text(text: str, rng: random.Random, words: list[str]) -> str:
    """1-3 edits of a text proto: numbers to extreme values, names and strings swapped, lines and blocks moved."""
    for _ in range(rng.randint(1, 3)):
        tokens = list(_TOKEN.finditer(text))
        op = rng.choice(["number", "number", "number", "word", "string", "line-delete", "line-dup",
                         "block-delete", "block-dup", "bytes"])
        if op in ("number", "word", "string") and tokens:
            numbers = [t for t in tokens if t.group()[0] in "-0123456789"]
            strings = [t for t in tokens if t.group()[0] == '"']
            names = [t for t in tokens if t.group()[0].isalpha() or t.group()[0] == "_"]
            pool = {"number": numbers, "string": strings, "word": names}[op] or tokens
            t = rng.choice(pool)
            if op == "number":
                new = str(rng.choice(INTERESTING_INTS)) if rng.random() < 0.7 else rng.choice(INTERESTING_FLOATS)
            elif op == "word":
                new = rng.choice(words)
            else:
                new = rng.choice([rng.choice(strings).group() if strings else '""', '""', f'"{rng.choice(words)}"',
                                  '"nope/missing"', '"' + "x" * 300 + '"', '"."'])
            text = text[:t.start()] + new + text[t.end():]
        elif op in ("line-delete", "line-dup"):
            lines = text.splitlines(keepends=True)
            if lines:
                i = rng.randrange(len(lines))
                lines[i:i + 1] = [] if op == "line-delete" else [lines[i], lines[rng.randrange(len(lines))]]
            text = "".join(lines)
        elif op in ("block-delete", "block-dup"):
            opens = [m.start() for m in re.finditer(r"\{", text)]
            if opens:
                start = rng.choice(opens)
                end = _block_end(text, start)
                name = text.rfind(" ", 0, max(start - 1, 0))
                block = text[name + 1:end]
                text = text[:name + 1] + ("" if op == "block-delete" else block + " " + block) + text[end:]
        else:
            text = mutate_bytes(text.encode(), rng).decode("utf-8", errors="replace")
    return text


def _block_end(text: str, start: int) -> int:
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return i + 1
    return len(text)


def mutate_message(msg, rng: random.Random, strings: list[str]):
    """1-3 field edits of a protobuf message in place: extreme numbers, strings, dropped/duplicated repeats."""
    from google.protobuf.descriptor import FieldDescriptor as F
    limits = {F.TYPE_INT32: (-2**31, 2**31 - 1), F.TYPE_SINT32: (-2**31, 2**31 - 1), F.TYPE_UINT32: (0, 2**32 - 1),
              F.TYPE_INT64: (-2**63, 2**63 - 1), F.TYPE_SINT64: (-2**63, 2**63 - 1), F.TYPE_UINT64: (0, 2**64 - 1)}
    for _ in range(rng.randint(1, 3)):
        candidates = []
        stack = [msg]
        while stack:
            m = stack.pop()
            for fd in m.DESCRIPTOR.fields:
                candidates.append((m, fd))
                if fd.type == F.TYPE_MESSAGE:
                    value = getattr(m, fd.name)
                    if fd.is_repeated:
                        stack.extend(value)
                    elif m.HasField(fd.name):
                        stack.append(value)
        m, fd = rng.choice(candidates)
        repeated = fd.is_repeated
        values = getattr(m, fd.name)
        if fd.type == F.TYPE_MESSAGE:
            if repeated and len(values) and rng.random() < 0.5:
                i = rng.randrange(len(values))
                if rng.random() < 0.5:
                    del values[i]
                else:
                    values.add().CopyFrom(values[i])
            elif not repeated and rng.random() < 0.5:
                m.ClearField(fd.name)
            continue
        new = _scalar(fd, rng, strings, limits)
        if repeated:
            op = rng.choice(["set", "delete", "clear", "append", "truncate"])
            if op == "set" and len(values):
                values[rng.randrange(len(values))] = new
            elif op == "delete" and len(values):
                del values[rng.randrange(len(values))]
            elif op == "truncate" and len(values):
                del values[rng.randrange(len(values)):]
            elif op == "clear":
                m.ClearField(fd.name)
            else:
                values.append(new)
        else:
            setattr(m, fd.name, new)
    return msg


def _scalar(fd, rng: random.Random, strings: list[str], limits: dict):
    from google.protobuf.descriptor import FieldDescriptor as F
    if fd.type in limits:
        lo, hi = limits[fd.type]
        return min(max(rng.choice(INTERESTING_INTS), lo), hi)
    if fd.type in (F.TYPE_FLOAT, F.TYPE_DOUBLE):
        return float(rng.choice(INTERESTING_FLOATS + ["3", "255", "-5"]))
    if fd.type == F.TYPE_BOOL:
        return rng.random() < 0.5
    if fd.type == F.TYPE_ENUM:
        return rng.choice(fd.enum_type.values).number
    if fd.type == F.TYPE_BYTES:
        return rng.randbytes(rng.randint(0, 64))
    return rng.choice(strings)


def mutate_json(text: str, rng: random.Random) -> str:
    """An edit of one node of a JSON document (deleted, retyped, extreme, truncated, deeply nested), or of its bytes."""
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if doc is None or rng.random() < 0.2:
        return mutate_bytes(text.encode(), rng).decode("utf-8", errors="replace")
    paths, stack = [], [((), doc)]
    while stack:
        path, node = stack.pop()
        paths.append(path)
        children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        stack.extend((path + (k,), v) for k, v in children)
    path = rng.choice(paths[1:] or paths)
    if not path:
        return json.dumps(rng.choice([None, [], 0, "x"]))
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    key, old = path[-1], parent[path[-1]]
    op = rng.choice(["delete", "replace", "replace", "string", "deep"])
    if op == "delete":
        del parent[key]
    elif op == "string" and isinstance(old, str) and old:
        i = rng.randrange(len(old))
        parent[key] = rng.choice([old[:i], old[:i] + "!" + old[i + 1:], old + old, old[::-1]])
    elif op == "deep":
        parent[key] = "@DEEP@"   # nesting deeper than any recursive parser's limit
        return json.dumps(doc).replace('"@DEEP@"', "[" * 100000 + "]" * 100000)
    else:
        parent[key] = rng.choice([None, True, 0, -1, 1e308, 2**70, -2**70, "", "x", [], {}, [1, 2, 3],
                                  {"a": 1}, "AAAA", 3.5])
    return json.dumps(doc)


# LMDB layout (lmdb_tools/mdbcheck.py): the meta fields and where they sit in meta page 0 or 1.
_META_FIELDS = {"magic": (16, "<I"), "version": (20, "<I"), "psize": (40, "<I"), "free_flags": (44, "<H"),
                "main_flags": (92, "<H"), "depth": (94, "<H"), "entries": (128, "<Q"), "root": (136, "<Q"),
                "last_pg": (144, "<Q"), "txnid": (152, "<Q")}


def mutate_mdb(data: bytes, rng: random.Random, psize: int = 4096) -> bytes:
    """Page-aware damage of a data.mdb: a meta field, a branch/leaf page's header or nodes, a zeroed or copied page."""
    b = bytearray(data)
    pages = len(b) // psize
    tree = [p for p in range(2, pages) if struct.unpack_from("<H", b, p * psize + 10)[0] & 0x03]
    op = rng.choice(["meta", "meta", "page", "page", "page", "zero", "copy", "truncate", "bytes"])
    if op == "meta":
        name = rng.choice(list(_META_FIELDS))
        offset, fmt = _META_FIELDS[name]
        offset += rng.choice([0, psize])
        bits = struct.calcsize(fmt) * 8
        value = rng.choice([0, 1, 2, 3, pages, pages + 1, 2**(bits - 1), 2**bits - 1, 4096, 512, 65536 % 2**bits])
        struct.pack_into(fmt, b, offset, value % 2**bits)
    elif op == "page" and tree:
        start = rng.choice(tree) * psize
        if rng.random() < 0.5:   # the header or the pointer array
            for _ in range(rng.randint(1, 4)):
                j = start + rng.randrange(64)
                b[j] ^= 1 << rng.randrange(8)
        else:                    # a node header near the end of the page
            j = start + psize - rng.randrange(8, 512)
            struct.pack_into("<H", b, j, rng.choice([0, 1, 0xFFFF, 0x8000, 4096, 4095, 17]))
    elif op in ("zero", "copy") and pages > 2:
        target = rng.choice(tree or list(range(pages))) * psize
        source = rng.randrange(pages) * psize
        b[target:target + psize] = bytes(psize) if op == "zero" else b[source:source + psize]
    elif op == "truncate":
        cut = rng.choice([rng.randrange(len(b)), rng.randrange(max(pages, 1)) * psize])
        del b[cut:]
    else:
        return mutate_bytes(data, rng)
    return bytes(b)


def mutate_npy(data: bytes, rng: random.Random) -> bytes:
    """An edit of a .npy header (shape, dtype, order) or of its bytes."""
    header_end = data.find(b"\n") + 1
    header = data[:header_end].decode("latin1", errors="replace")
    if header_end <= 0 or rng.random() < 0.4:
        return mutate_bytes(data, rng)
    op = rng.choice(["shape", "dtype", "order"])
    if op == "shape":
        dims = [str(rng.choice([0, 1, 3, 4, 13, 10**6, 2**31, 2**40, -1])) for _ in range(rng.randint(0, 5))]
        header = re.sub(r"'shape': \([^)]*\)", f"'shape': ({', '.join(dims)}{',' if len(dims) == 1 else ''})", header)
    elif op == "dtype":
        header = re.sub(r"'descr': '[^']*'", f"'descr': '{rng.choice(['<f8', '|u1', '|O', '<c16', 'V8', '<i8', 'xx'])}'", header)
    else:
        header = header.replace("False", "True")
    return header.encode("latin1") + data[header_end:]


# -------------------------------------------------------------------- corpus ---

TEXT_NETS = {"zoo.prototxt": "weights/zoo_iter_3.caffemodel", "train_net.prototxt": "solver/init.caffemodel",
             "caffenet_color.prototxt": "weights/caffenet_color_iter_0.caffemodel",
             "legacy/caffenet_gray_v1.prototxt": "weights/caffenet_gray_iter_0.caffemodel",
             "real_models/googlenet_deploy.prototxt": None, "real_models/resnet50_deploy.prototxt": None,
             "real_models/alexnet_deploy.prototxt": None}
RECORD_NET = """name: "records"
layer {{ name: "data" type: "Data" top: "data" top: "label" transform_param {{ {transform} }}
        data_param {{ source: "{source}" batch_size: 4 backend: LMDB }} }}
layer {{ name: "sum" type: "Reduction" bottom: "data" top: "sum" reduction_param {{ axis: 0 }} }}
layer {{ name: "labels" type: "Reduction" bottom: "label" top: "labels" reduction_param {{ axis: 0 }} }}
"""


def build_corpus(base: Path) -> None:
    """The fixture layout every case links to, plus our own snapshot with its .solverstate.json sidecar."""
    for name in ("train_net.prototxt", "train_solver.prototxt", "zoo.prototxt", "caffenet_color.prototxt",
                 "caffenet_gray.prototxt", "zoo_input.npy"):
        shutil.copy(CAFFE / name, base / name)
    for name in ("weights", "solver", "zoo_input_lmdb", "lmdb"):
        shutil.copytree(CAFFE / name, base / name)
    import numpy as np
    np.save(base / "zoo_labels.npy", np.zeros(4, np.float32))   # the zoo net's second data top
    shutil.copytree(CAFFE / "lmdb" / "train_lmdb", base / "lmdb" / "test_lmdb")
    shutil.copytree(FIXTURES / "legacy", base / "legacy")
    shutil.copytree(FIXTURES / "real_models", base / "real_models")
    solver = (CAFFE / "train_solver.prototxt").read_text().replace('"solver/train"', '"ours/train"')
    (base / "ours_solver.prototxt").write_text(solver)
    (base / "ours").mkdir()
    (base / "ours_build.prototxt").write_text(solver.replace("max_iter: 12", "max_iter: 6"))
    code, err = _run_child(["train", "--solver", "ours_build.prototxt"], base, base / "build.err", 300, None)
    if code != 0 or not (base / "ours" / "train_iter_6.solverstate.json").exists():
        raise RuntimeError(f"fuzz corpus: training our snapshot failed ({code}): {err[-2000:]}")


def _case_dir(base: Path, case: Path, real_dirs: tuple[str, ...] = ()) -> None:
    """Links to every corpus entry; the directories the command writes into are real, holding links."""
    case.mkdir(parents=True)
    for entry in base.iterdir():
        if entry.name in real_dirs:
            (case / entry.name).mkdir()
            for f in entry.iterdir():
                (case / entry.name / f.name).symlink_to(f)
        else:
            (case / entry.name).symlink_to(entry)


@dataclass
class Case:
    """One fuzz case: the command, where it runs, the damaged file and what a good message names."""
    reader: str
    index: int
    argv: list[str]
    cwd: Path
    target: Path
    names: list[str]
    mutation: str = ""
    started: float = 0.0


def _replace(case: Path, rel: str, data: bytes) -> Path:
    path = case / rel
    if path.is_symlink() or path.exists():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def case_prototxt(rng: random.Random, base: Path, case: Path, words: list[str]) -> Case:
    source = rng.choices(list(TEXT_NETS), weights=[4, 3, 2, 1, 1, 1, 1])[0]
    _case_dir(base, case)
    text = mutate_text((base / source).read_text(), rng, words)
    target = _replace(case, "net.prototxt", text.encode())
    weights = TEXT_NETS[source]
    phase = rng.choice(["TEST", "TRAIN"])
    if weights and rng.random() < 0.5:
        argv = ["net", "forward", str(target), "--weights", weights, "--phase", phase, "--out", str(case / "o.npz")]
    else:
        argv = ["net", "summary", str(target), "--phase", phase] + (["--weights", weights] if weights and rng.random() < 0.3 else [])
    return Case("prototxt", 0, argv, case, target, [str(target)], source)


def _admissible_solver(text: str) -> bool:
    """A solver that parses is only redrawn when it would just train longer (a valid, slow input)."""
    from convert import caffe_pb2 as pb
    from convert.protoio import parse_text_proto
    from convert.errors import UserError
    try:
        s = parse_text_proto(text, pb.SolverParameter)
    except UserError:
        return True
    passes = s.max_iter // s.test_interval + 1 if s.test_interval > 0 else 1
    return s.max_iter * max(s.iter_size, 1) + passes * sum(max(t, 0) for t in s.test_iter) <= 400


def case_solver(rng: random.Random, base: Path, case: Path, words: list[str]) -> Case:
    _case_dir(base, case, real_dirs=("solver",))
    original = (base / "train_solver.prototxt").read_text()
    for _ in range(20):
        text = mutate_text(original, rng, words)
        if _admissible_solver(text):
            break
    target = _replace(case, "solver.prototxt", text.encode())
    return Case("solver", 0, ["train", "--solver", str(target)], case, target, [str(target)])


def case_caffemodel(rng: random.Random, base: Path, case: Path, words: list[str]) -> Case:
    from convert import caffe_pb2 as pb
    source, net = rng.choice([("weights/zoo_iter_3.caffemodel", "zoo.prototxt"),
                              ("solver/init.caffemodel", "train_net.prototxt"),
                              ("solver/train_iter_6.caffemodel", "train_net.prototxt")])
    _case_dir(base, case)
    data = (base / source).read_bytes()
    if rng.random() < 0.6:
        msg = pb.NetParameter.FromString(data)
        layer_names = [lp.name for lp in msg.layer]
        data = mutate_message(msg, rng, layer_names + words[:50] + [""]).SerializeToString()
        kind = "message"
    else:
        data, kind = mutate_bytes(data, rng), "bytes"
    target = _replace(case, "w.caffemodel", data)
    if net == "zoo.prototxt" and rng.random() < 0.4:
        argv = ["net", "forward", net, "--weights", str(target), "--out", str(case / "o.npz")]
    elif net == "train_net.prototxt" and rng.random() < 0.4:
        argv = ["test", "--model", net, "--weights", str(target), "--iterations", "2"]
    else:
        argv = ["net", "summary", net, "--weights", str(target)]
    return Case("caffemodel", 0, argv, case, target, [str(target)], kind)


def case_binaryproto(rng: random.Random, base: Path, case: Path, words: list[str]) -> Case:
    from convert import caffe_pb2 as pb
    _case_dir(base, case)
    data = (base / "lmdb" / "gray227_mean.binaryproto").read_bytes()
    if rng.random() < 0.6:
        data, kind = mutate_message(pb.BlobProto.FromString(data), rng, [""]).SerializeToString(), "message"
    else:
        data, kind = mutate_bytes(data, rng), "bytes"
    target = _replace(case, "mean.binaryproto", data)
    (case / "mean_net.prototxt").write_text(RECORD_NET.format(
        transform='mean_file: "mean.binaryproto" scale: 0.00390625', source="lmdb/gray227_lmdb"))
    argv = ["test", "--model", "mean_net.prototxt", "--weights", "weights/zoo_iter_3.caffemodel", "--iterations", "3"]
    return Case("binaryproto", 0, argv, case, target, [str(target)], kind)


def case_solverstate(rng: random.Random, base: Path, case: Path, words: list[str]) -> Case:
    from convert import caffe_pb2 as pb
    _case_dir(base, case, real_dirs=("solver",))
    data = (base / "solver" / "train_iter_6.solverstate").read_bytes()
    if rng.random() < 0.6:
        strings = ["", "solver/train_iter_12.caffemodel", "weights/zoo_iter_3.caffemodel", "nope.caffemodel",
                   "solver", "/dev/null"]
        data, kind = mutate_message(pb.SolverState.FromString(data), rng, strings).SerializeToString(), "message"
    else:
        data, kind = mutate_bytes(data, rng), "bytes"
    target = _replace(case, "solver/train_iter_6.solverstate", data)
    argv = ["train", "--solver", "train_solver.prototxt", "--snapshot", str(target)]
    if rng.random() < 0.2:
        argv += ["--resume-data", "caffe"]
    return Case("solverstate", 0, argv, case, target, [str(target)], kind)


def case_sidecar(rng: random.Random, base: Path, case: Path, words: list[str]) -> Case:
    _case_dir(base, case, real_dirs=("ours",))
    text = (base / "ours" / "train_iter_6.solverstate.json").read_text()
    target = _replace(case, "ours/train_iter_6.solverstate.json", mutate_json(text, rng).encode())
    state = case / "ours" / "train_iter_6.solverstate"
    argv = ["train", "--solver", "ours_solver.prototxt", "--snapshot", str(state)]
    return Case("sidecar", 0, argv, case, target, [str(target)])


def _records(db: Path) -> list[tuple[bytes, bytes]]:
    import lmdb
    env = lmdb.open(str(db), readonly=True, lock=False)
    with env.begin() as txn:
        items = list(txn.cursor())
    env.close()
    return items


def _record_commands(rng: random.Random, case: Path, db: Path, encoded: bool) -> list[str]:
    choice = rng.choice(["inspect", "grid", "mean", "test"])
    if choice == "inspect":
        return ["lmdb", "inspect", str(db)]
    if choice == "grid":
        return ["lmdb", "inspect", str(db), "--grid", str(case / "g.png"), "--count", "64"]
    if choice == "mean":
        return ["lmdb", "mean", str(db), str(case / "m.binaryproto")]
    transform = rng.choice(["", "scale: 0.00390625", "crop_size: 8", "mirror: true crop_size: 16",
                            "force_color: true" if encoded else "mean_value: 100"])
    (case / "records_net.prototxt").write_text(RECORD_NET.format(transform=transform, source=db.name))
    return ["test", "--model", "records_net.prototxt", "--weights", "weights/zoo_iter_3.caffemodel",
            "--iterations", "16", "--phase", rng.choice(["TEST", "TRAIN"])]


def case_datum(rng: random.Random, base: Path, case: Path, words: list[str]) -> Case:
    import lmdb
    from google.protobuf.message import DecodeError
    from convert import caffe_pb2 as pb
    source = rng.choice(["lmdb/train_lmdb", "lmdb/encoded_lmdb", "zoo_input_lmdb", "lmdb/gray227_lmdb"])
    _case_dir(base, case)
    items = _records(base / source)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(items))
        key, value = items[i]
        op = rng.random()
        if op < 0.55:
            try:
                value = mutate_message(pb.Datum.FromString(value), rng, [""]).SerializeToString()
            except DecodeError:   # damaged by an earlier edit of this case
                value = mutate_bytes(value, rng)
        elif op < 0.85:
            value = mutate_bytes(value, rng)
        elif op < 0.95:
            key = mutate_bytes(key, rng) or b"k"
        else:
            value = b""
        items[i] = (key, value)
    db = case / "db"
    env = lmdb.open(str(db), map_size=1 << 30)
    with env.begin(write=True) as txn:
        for key, value in items:
            txn.put(key, value)
    env.close()
    (db / "lock.mdb").unlink(missing_ok=True)
    argv = _record_commands(rng, case, db, "encoded" in source)
    return Case("datum", 0, argv, case, db, [str(db)], source)


def case_lmdb(rng: random.Random, base: Path, case: Path, words: list[str]) -> Case:
    source = rng.choice(["lmdb/train_lmdb", "lmdb/encoded_lmdb", "zoo_input_lmdb", "lmdb/gray227_lmdb"])
    _case_dir(base, case)
    data = (base / source / "data.mdb").read_bytes()
    data, kind = (mutate_mdb(data, rng), "pages") if rng.random() < 0.7 else (mutate_bytes(data, rng), "bytes")
    db = case / "db"
    db.mkdir()
    (db / "data.mdb").write_bytes(data)
    argv = _record_commands(rng, case, db, "encoded" in source)
    return Case("lmdb", 0, argv, case, db, [str(db)], f"{source} {kind}")


def case_npy(rng: random.Random, base: Path, case: Path, words: list[str]) -> Case:
    _case_dir(base, case)
    target = _replace(case, "x.npy", mutate_npy((base / "zoo_input.npy").read_bytes(), rng))
    argv = ["net", "forward", "zoo.prototxt", "--weights", "weights/zoo_iter_3.caffemodel",
            "--input", f"data={target}", "--input", "label=zoo_labels.npy", "--out", str(case / "o.npz")]
    return Case("npy", 0, argv, case, target, [str(target)])


READERS: dict[str, Callable[..., Case]] = {
    "prototxt": case_prototxt, "solver": case_solver, "caffemodel": case_caffemodel,
    "binaryproto": case_binaryproto, "solverstate": case_solverstate, "sidecar": case_sidecar,
    "datum": case_datum, "lmdb": case_lmdb, "npy": case_npy,
}


# ---------------------------------------------------------------- execution ---

def _vm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def _child(argv: list[str], cwd: Path, err_path: Path, timeout: int, memory: int | None) -> None:
    """In the forked child: run the command with stderr to a file, under the limits; never returns."""
    code = 1
    try:
        os.chdir(cwd)
        err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(err, 2)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        os.environ["REPLICATE_MAX_MEMORY"] = MAX_NET_MEMORY
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        signal.alarm(timeout)   # SIGALRM's default action ends the process, even inside C code
        from replicate import cli
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        os._exit(code)


def _run_child(argv, cwd, err_path, timeout, memory) -> tuple[int, str]:
    """Run one command in a forked child and wait (used to build the corpus)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _child(argv, cwd, err_path, timeout, memory)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), Path(err_path).read_text(errors="replace")


_BAR = re.compile(r"\| *\d+/\d+ \[|\d+\w*(?:/s)? \[\d\d:\d\d")


def message_lines(err: str) -> list[str]:
    """stderr without progress bars (tqdm redraws, which end on their own line) and warnings: the messages."""
    lines = []
    for line in err.splitlines():
        line = line.split("\r")[-1]
        if line.strip() and not _BAR.search(line) and not line.startswith("warning: ") and ": warning: " not in line:
            lines.append(line)
    return lines


def classify(case: Case, status: int, err: str, maxrss: int, rss_limit: int) -> str:
    """The outcome of a finished case: exit 0 / exit 2 (good) or the kind of failure."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return "hang" if sig == signal.SIGALRM else "memory" if sig == signal.SIGKILL else f"signal {signal.Signals(sig).name}"
    code = os.WEXITSTATUS(status)
    memory_words = ("MemoryError", "can't allocate memory", "bad_alloc", "Cannot allocate memory")
    if maxrss > rss_limit or (code != 2 and any(w in err for w in memory_words)):
        return "memory"
    if "Traceback (most recent call last)" in err or code not in (0, 2):
        return "traceback" if "Traceback" in err else f"exit {code}"
    if code == 0:
        return "exit 0"
    lines = message_lines(err)
    if len(lines) != 1:
        return "multiline"
    return "exit 2" if any(n in lines[0] for n in case.names) else "unnamed"


@dataclass
class Report:
    """Outcomes per reader, and the failing cases."""
    seed: int
    counts: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    failures: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    times: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    @property
    def failed(self) -> int:
        return sum(n for c in self.counts.values() for k, n in c.items() if k not in OUTCOMES_OK)

    def markdown(self, command: str) -> str:
        """The per-reader table with the command that reproduces it."""
        kinds = ["exit 0", "exit 2", "traceback", "signal", "hang", "memory", "unnamed", "multiline"]
        extra = sorted({k for c in self.counts.values() for k in c} - set(kinds))
        head = ["reader", "cases", "s/case"] + kinds + extra
        rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        total = Counter()
        for reader in sorted(self.counts):
            c = self.counts[reader]
            total.update(c)
            rows.append(f"| {reader} | {sum(c.values())} | {self.times[reader] / max(sum(c.values()), 1):.2f} | " + " | ".join(str(sum(n for k, n in c.items()
                        if k == kind or (kind == 'signal' and k.startswith('signal')))) for kind in kinds + extra) + " |")
        rows.append(f"| **all** | {sum(total.values())} | {sum(self.times.values()) / max(sum(total.values()), 1):.2f} | " + " | ".join(str(sum(n for k, n in total.items()
                    if k == kind or (kind == 'signal' and k.startswith('signal')))) for kind in kinds + extra) + " |")
        return (f"`{command}` ({self.seconds:.0f} s)\n\n" + "\n".join(rows) + "\n")


def run(cases: int, seed: int = 0, readers: list[str] | None = None, jobs: int = 2, timeout: int = 30,
        memory_gib: float = 4.0, keep: Path | None = None, progress: bool = False) -> Report:
    """Run `cases` cases round-robin over the readers, `jobs` at a time; return the outcomes."""
    import torch
    from replicate import cli
    torch.set_num_threads(1)   # children are forked: no thread pool may be running
    cli.build_parser()         # imports every command's modules once, here, not in each child
    names = readers or list(READERS)
    words = proto_words()
    report, started = Report(seed), time.time()
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        base = Path(tmp) / "corpus"
        base.mkdir()
        build_corpus(base)
        memory = _vm_bytes() + int(memory_gib * 2**30)
        rss_limit = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 + int(memory_gib * 2**30)
        running: dict[int, tuple[Case, Path]] = {}
        pending = iter(range(cases))

        def start(i: int) -> None:
            reader = names[i % len(names)]
            rng = random.Random(f"{seed}:{reader}:{i}")
            case = READERS[reader](rng, base, Path(tmp) / f"case{i}", words)
            case.index = i
            err_path = case.cwd / "stderr.txt"
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(case.argv, case.cwd, err_path, timeout, memory)
            case.started = time.time()
            running[pid] = (case, err_path)

        for i in pending:
            start(i)
            if len(running) >= jobs:
                break
        while running:
            pid, status, usage = os.wait4(-1, 0)
            if pid not in running:
                continue
            case, err_path = running.pop(pid)
            err = err_path.read_text(errors="replace") if err_path.exists() else ""
            outcome = classify(case, status, err, usage.ru_maxrss * 1024, rss_limit)
            report.counts[case.reader][outcome] += 1
            report.times[case.reader] += time.time() - case.started
            if outcome not in OUTCOMES_OK:
                report.failures.append({"reader": case.reader, "index": case.index, "outcome": outcome,
                                        "argv": case.argv, "mutation": case.mutation, "stderr": err[-3000:]})
                if keep is not None:
                    shutil.copytree(case.cwd, keep / f"{case.reader}-{case.index}", symlinks=True)
            if progress and sys.stderr.isatty():
                print(f"\r{sum(sum(c.values()) for c in report.counts.values())}/{cases} cases, "
                      f"{report.failed} failed", end="", file=sys.stderr, flush=True)
            shutil.rmtree(case.cwd, ignore_errors=True)
            nxt = next(pending, None)
            if nxt is not None:
                start(nxt)
    if progress:
        print(file=sys.stderr)
    report.seconds = time.time() - started
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reader", action="append", choices=list(READERS), help="only these readers (repeatable)")
    parser.add_argument("--jobs", type=int, default=2, help="cases at once")
    parser.add_argument("--timeout", type=int, default=30, help="seconds per case")
    parser.add_argument("--memory", type=float, default=4.0, help="GiB a case may add to the parent's size")
    parser.add_argument("--keep", type=Path, help="copy failing cases here")
    parser.add_argument("--markdown", type=Path, help="write the per-reader table here")
    parser.add_argument("--json", type=Path, help="write the failures here")
    args = parser.parse_args(argv)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    report = run(args.cases, args.seed, args.reader, args.jobs, args.timeout, args.memory, args.keep, progress=True)
    command = "benchmarks/fuzz.py " + " ".join(a for a in (argv if argv is not None else sys.argv[1:]))
    table = report.markdown(command.strip())
    print(table)
    for f in report.failures[:20]:
        print(f"{f['reader']} #{f['index']} {f['outcome']}: {' '.join(f['argv'])}\n  "
              + "\n  ".join(f["stderr"].strip().splitlines()[-3:]))
    if args.markdown:
        args.markdown.write_text(table)
    if args.json:
        args.json.write_text(json.dumps(report.failures, indent=1))
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
