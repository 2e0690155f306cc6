"""Rewrite a checkpoint you trust so that it holds only tensors and plain data.

    python scripts/convert_checkpoint.py --trust <old.ckpt> <new.ckpt>

``train.py``, ``evaluate.py`` and the scripts load checkpoints with ``weights_only=True`` and refuse
a file whose pickle names any other type, because unpickling such a file can run arbitrary code.
A file written by an older version of this tool may hold such types (e.g. the run config as an
OmegaConf ``DictConfig``). This script loads it *with full unpickling*, which runs whatever the file
asks for: only do it for files whose origin you trust, which ``--trust`` confirms. It then turns
configs into plain containers and NumPy arrays into tensors, writes ``<new.ckpt>`` and checks that
the result loads with ``weights_only=True``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch


def to_plain(obj):
    """Plain containers, numbers, strings and tensors only."""
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(obj):
            return OmegaConf.to_container(obj, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, dict):
        return {to_plain(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        out = [to_plain(v) for v in obj]
        return out if isinstance(obj, list) else tuple(out)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--trust", action="store_true",
                    help="confirm that you trust the file's origin: loading it may run code it contains")
    args = ap.parse_args(argv)
    if not args.trust:
        print("error: loading this file fully may run code it contains; add --trust if you trust its origin",
              file=sys.stderr)
        return 2
    if args.new.resolve() == args.old.resolve():
        print("error: give a new file name; the original stays as it is", file=sys.stderr)
        return 2
    from astdp.lit.checkpoints import atomic_save, read_checkpoint

    ckpt = to_plain(torch.load(args.old, map_location="cpu", weights_only=False))
    atomic_save(ckpt, args.new)
    read_checkpoint(args.new, key="converted")  # the same check train.py and evaluate.py make
    print(f"wrote {args.new}: loads with weights_only=True")
    return 0


if __name__ == "__main__":
    sys.exit(main())
