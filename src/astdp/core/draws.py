"""Counter-based uniform draws for the fake targets (eq 17-18): a pure function of (key, counter, position).

    k      = hash32(((counter mod 2^32) * 0x9E3779B1 mod 2^32) xor key)          one key per draw
    u[b,i] = (hash32((b * H + i) xor k) >> 8) / 2^24                             (B, H), in [0, 1)

``hash32`` is a 32-bit integer mixer (two xorshift-multiply rounds, bijective on 32 bits); the top 24
bits give a uniform on the grid ``{0, 2^-24, ..., 1 - 2^-24}``. The relaxer bumps ``counter`` once
per draw, so the whole sequence is reproducible from the seed (which sets ``key``) and one integer,
and the same numbers come out in eager torch, in compiled code (:mod:`astdp.core.fused` inlines it
in its step) and on any device: nothing is drawn from a stateful generator, and the draws of a step
cost a few integer operations per hidden neuron in the same pass as the rest of the step.

All integer arithmetic is in int64 on values below 2^32, with every product below 2^63 (a 32-bit
multiplier is split in two 16-bit halves), so nothing overflows on any backend.
"""

from __future__ import annotations

import torch

MASK32 = 0xFFFFFFFF
GOLDEN = 0x9E3779B1  # 2^32 / golden ratio: spreads consecutive counters over 32 bits
_MIX = (0x7FEB352D, 0x846CA68B)  # xorshift-multiply constants of a low-bias 32-bit mixer
_GRID = 1.0 / 16777216.0  # 2^-24


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2^32`` for int64 ``x`` in [0, 2^32) and a 32-bit constant ``c``, without overflow."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & MASK32


def hash32(x: torch.Tensor) -> torch.Tensor:
    """A bijective mix of the low 32 bits of int64 ``x`` (values in [0, 2^32))."""
    x = x & MASK32
    x = x ^ (x >> 16)
    x = _mul32(x, _MIX[0])
    x = x ^ (x >> 15)
    x = _mul32(x, _MIX[1])
    return x ^ (x >> 16)


def step_key(counter: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """The 0-d int64 key of draw number ``counter`` under ``key`` (both 0-d int64 tensors)."""
    return hash32(_mul32(counter & MASK32, GOLDEN) ^ key)


def uniform_at(index: torch.Tensor, k: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``U(0, 1)`` at int64 positions ``index`` (any shape) under the step key ``k``."""
    return (hash32(index ^ k) >> 8).to(dtype) * _GRID


def positions(rows: int, cols: int, device, width: int | None = None, first: int = 0) -> torch.Tensor:
    """The int64 draw positions ``b * cols + (j - first)`` of a (rows, width) grid whose columns
    ``[first, first + cols)`` are the drawn ones (default: all ``cols`` of a (rows, cols) grid)."""
    width = cols if width is None else width
    return torch.arange(rows, device=device).unsqueeze(1) * cols + torch.arange(-first, width - first, device=device)


def uniform(counter: torch.Tensor, key: torch.Tensor, rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
    """The (rows, cols) draws of number ``counter``: position ``(b, i)`` is ``b * cols + i``."""
    return uniform_at(positions(rows, cols, counter.device), step_key(counter, key), dtype)


def seed_key(seed: int) -> int:
    """A 32-bit key from any integer seed."""
    return int(hash32(torch.tensor(int(seed) % (1 << 62), dtype=torch.int64) ^ 0x5BD1E995))
