"""The one exception type for bad input: the CLI prints its message on one line and exits 2."""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator


class UserError(Exception):
    """Bad input from the user (a file, a record, an option): the message names it and what was expected."""


def naming(where: str | os.PathLike, error: UserError, also: tuple[str | os.PathLike, ...] = ()) -> UserError:
    """The error with `where` (a file, or a file and record) in front, unless its message already names
    it or one of the files in `also`."""
    message = str(error)
    named = any(os.fspath(w) in message for w in (where, *also))
    return UserError(message if named else f"{os.fspath(where)}: {message}")


@contextmanager
def about(where: str | os.PathLike, also: tuple[str | os.PathLike, ...] = ()) -> Iterator[None]:
    """UserErrors raised inside name `where` (e.g. the prototxt a layer error comes from)."""
    try:
        yield
    except UserError as e:
        raise naming(where, e, also) from None
