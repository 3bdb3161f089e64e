"""One way to write a file: to a temporary name in the same folder, then renamed over the target.

A crash (or a full disk) mid-write leaves the last good copy in place, never a truncated file, and
an out-of-space error is reported as such, naming the file, instead of whatever the writing library
makes of it ("Invalid thrift: transport error", "An error occurred while generating the dataset").
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)
# errno values that mean "the disk (or the quota) is full": no retry can clear them by itself.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# How libraries that do not raise OSError (polars, pyarrow, SQLite) word the same condition.
NO_SPACE_WORDS = ("no space left on device", "os error 28", "disk is full", "database or disk is full", "quota exceeded")


class NoSpaceLeftError(OSError):
    """The filesystem holding `path` is full. Not transient: retrying cannot help.

    The message says "no space left", names the file and the folder, and what to do.
    """

    def __init__(self, path: str | Path, folder: str | Path | None = None, cause: BaseException | None = None):
        self.path = Path(path)
        self.folder = Path(folder) if folder is not None else self.path.parent
        detail = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
        super().__init__(
            errno.ENOSPC,
            f"no space left on device while writing {self.path} (data folder {self.folder}){detail}. "
            "Free space there, or point MEDSET_DATA_DIR at a larger disk, then run again; "
            "the previous copy of the file was left intact.",
        )

    def __reduce__(self):  # picklable across process boundaries despite the custom signature
        return type(self), (self.path, self.folder)


def is_no_space(error: BaseException) -> bool:
    """True when `error` (or an exception it was raised from) says the disk is full."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, NoSpaceLeftError):
            return True
        if isinstance(current, OSError) and current.errno in NO_SPACE_ERRNOS:
            return True
        if any(word in str(current).lower() for word in NO_SPACE_WORDS):
            return True
        current = current.__cause__ or current.__context__
    return False


@contextmanager
def no_space_names(path: str | Path, folder: str | Path | None = None) -> Iterator[None]:
    """Turn any out-of-space failure inside the block into `NoSpaceLeftError` naming `path`."""
    try:
        yield
    except NoSpaceLeftError:
        raise
    except Exception as error:
        if is_no_space(error):
            raise NoSpaceLeftError(path, folder, error) from error
        raise


def atomic_write(path: str | Path, write: Callable[[Path], object], *, folder: str | Path | None = None) -> Path:
    """Call `write(temporary_path)`, then rename the temporary file over `path`; returns `path`.

    The temporary file sits beside the target (same filesystem, so the rename is atomic) and is
    removed if `write` fails. Out-of-space errors raise `NoSpaceLeftError` naming `path` and
    `folder` (default: the file's folder). Other errors propagate unchanged.
    """
    path = Path(path)
    with no_space_names(path, folder):
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(handle)
        temporary = Path(name)
        # mkstemp makes the file private (0600); a release file should have the usual permissions.
        os.chmod(temporary, 0o666 & ~_UMASK)
        try:
            write(temporary)
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes, *, folder: str | Path | None = None) -> Path:
    """`data` to `path` through `atomic_write`."""
    return atomic_write(path, lambda temporary: temporary.write_bytes(data), folder=folder)


def atomic_write_text(path: str | Path, text: str, *, folder: str | Path | None = None) -> Path:
    """UTF-8 `text` to `path` through `atomic_write`."""
    return atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"), folder=folder)
