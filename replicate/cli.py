"""The `replicate` command: one subcommand per capability, discovered from replicate/commands/.

Bad input (convert.errors.UserError) prints one line naming the file, line or record and exits 2, and
so does an OSError of the environment (a full or read-only disk, a missing path); anything else is a
bug and keeps its traceback. Every command takes --max-memory (convert/memory.py).
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import pkgutil
import re
import sys
import warnings

from convert import memory
from convert.errors import UserError
from replicate import commands


# OSErrors that are the environment's, not a bug: a full or read-only disk, a missing or unreadable path.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG,
                      errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EMFILE, errno.ELOOP}


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (the command and what was wrong) and exit code 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {one_line(message)}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered (subparsers inherit OneLineParser)."""
    parser = OneLineParser(prog="replicate", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    for leaf in _leaf_parsers(parser):
        leaf.add_argument("--max-memory", metavar="SIZE", help="most memory a net's blobs may take, e.g. 8G "
                          f"(default: {round(memory.DEFAULT_FRACTION * 100)}%% of this machine's)")
    return parser


def _leaf_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers that run a command (those without subcommands of their own)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [parser]
    children = dict.fromkeys(p for action in subs for p in action.choices.values())
    return [leaf for child in children for leaf in _leaf_parsers(child)]


def one_line(message: str) -> str:
    """A message as one printable line (a damaged file can put newlines or escapes into it)."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], message)


def _end_progress_bars() -> None:
    """Close open tqdm bars so the error starts its own line."""
    from tqdm import tqdm
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; return its exit code (2 for bad input or a full, read-only or missing path)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    shown, budget = warnings.formatwarning, os.environ.get(memory.ENV)
    warnings.formatwarning = lambda message, *_, **__: f"replicate {args.command}: warning: {one_line(str(message))}\n"
    try:
        if getattr(args, "max_memory", None):
            memory.parse_size(args.max_memory)
            os.environ[memory.ENV] = args.max_memory   # inherited by spawned workers
        return int(args.func(args) or 0)
    except UserError as e:
        _end_progress_bars()
        print(f"replicate {args.command}: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in ENVIRONMENT_ERRNOS:
            raise
        _end_progress_bars()
        where = f"{e.filename}: " if e.filename else ""
        print(f"replicate {args.command}: error: {one_line(where + (e.strerror or str(e)))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"replicate {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = shown
        if budget is None:
            os.environ.pop(memory.ENV, None)
        else:
            os.environ[memory.ENV] = budget


if __name__ == "__main__":
    sys.exit(main())
