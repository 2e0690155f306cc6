"""Files on disk before torchvision reads them: IDX headers, a quiet download, the missing-files line.

IDX (MNIST, Fashion-MNIST, KMNIST): a big-endian header, the magic number (2051 for unsigned-byte
images ``(n, rows, cols)``, 2049 for unsigned-byte labels ``(n,)``), then one 32-bit size per
dimension, then the bytes. The item count ``n`` is read from the header and the file's size must
match it exactly, so that a small file is fine and a truncated one is an error naming the file;
torchvision itself only checks that these files exist. No Lightning import here.
"""

from __future__ import annotations

import contextlib
import io
import math
import socket
from pathlib import Path
from typing import Callable, Iterable

from astdp.data.errors import DataError

IDX_IMAGES, IDX_LABELS = 2051, 2049
IDX_SPLITS = {  # split -> (images file, labels file), torchvision's names once unpacked
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_FILES = tuple(name for pair in IDX_SPLITS.values() for name in pair)


def idx_dims(path: Path, magic: int, what: str = "IDX") -> tuple[int, ...]:
    """The dimensions in one uncompressed IDX file's header, ``(n, rows, cols)`` or ``(n,)``,
    after checking the magic number and that the size is the header's plus ``prod(dims)`` bytes."""
    ndim = 3 if magic == IDX_IMAGES else 1
    size = path.stat().st_size
    with path.open("rb") as f:
        header = f.read(4 + 4 * ndim)
    if len(header) < 4 + 4 * ndim or int.from_bytes(header[:4], "big") != magic:
        raise DataError(f"corrupt {what} file {path}: bad IDX header (expected magic number {magic})")
    dims = tuple(int.from_bytes(header[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    expected = len(header) + math.prod(dims)
    if size != expected:
        raise DataError(f"corrupt or truncated {what} file {path}: {size} bytes, but its header "
                        f"({' x '.join(map(str, dims))}) says {expected}")
    return dims


def check_idx_split(raw: Path, split: str, image_hw: tuple[int, int] = (28, 28), what: str = "IDX") -> int:
    """The item count of one split (images and labels agreeing, images of ``image_hw``)."""
    images, labels = (raw / name for name in IDX_SPLITS[split])
    n, rows, cols = idx_dims(images, IDX_IMAGES, what)
    (m,) = idx_dims(labels, IDX_LABELS, what)
    if (rows, cols) != tuple(image_hw):
        raise DataError(f"{what} file {images} holds {rows}x{cols} images, expected {image_hw[0]}x{image_hw[1]}")
    if n != m:
        raise DataError(f"{what} files disagree: {images} holds {n} images but {labels} {m} labels")
    return n


def check_idx(raw: Path, image_hw: tuple[int, int] = (28, 28), what: str = "IDX") -> dict[str, int]:
    """Item counts of both splits, from the headers: ``{"train": n, "test": n}``."""
    return {split: check_idx_split(raw, split, image_hw, what) for split in IDX_SPLITS}


def quiet_download(fetch: Callable[[], object], timeout: float = 10.0) -> str | None:
    """Runs ``fetch`` (torchvision's own download) with its chatter silenced and a socket timeout.
    Returns None on success, else the reason in one line."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            fetch()
        return None
    except Exception as e:  # noqa: BLE001 - any failure means "no download"; the reason is reported
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        return lines[-1] if lines else type(e).__name__  # the last line holds the network error
    finally:
        socket.setdefaulttimeout(old)


def missing(folder: Path, names: Iterable[str]) -> list[str]:
    return [name for name in names if not (folder / name).is_file()]


def not_found(title: str, folder: Path, names: Iterable[str], reason: str) -> DataError:
    """One line: the folder, the files expected there (and which are missing), why no download."""
    names = list(names)
    gone = missing(folder, names)
    which = "" if len(gone) == len(names) else f"; missing {', '.join(gone)}"
    return DataError(f"{title} not found: expected {', '.join(names)} in {folder}/ (torchvision's layout{which}) "
                     f"and no download ({reason})")
