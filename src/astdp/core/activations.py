"""Activations ``rho`` and their derivatives ``rho'`` (eq 2).

``sigmoid4(x) = sigmoid(4x)`` is the paper's choice (§3.1). ``sigmoid4_centered`` is the same curve
shifted by -1/2 (so ``rho(0) = 0``); ``rho'`` is unchanged. ``hardsigmoid`` is Equilibrium
Propagation's ``clip(x, 0, 1)``; ``tanh`` is offered for completeness.
Each function returns ``(rho(s), rho'(s))`` computed in one pass.
"""

from __future__ import annotations

from typing import Callable

import torch

Pair = tuple[torch.Tensor, torch.Tensor]


def sigmoid4(s: torch.Tensor) -> Pair:
    r = torch.sigmoid(s * 4.0)
    return r, r * (1.0 - r) * 4.0


def sigmoid4_centered(s: torch.Tensor) -> Pair:
    r = torch.sigmoid(s * 4.0)
    d = r * (1.0 - r) * 4.0
    return r.sub_(0.5), d


def hardsigmoid(s: torch.Tensor) -> Pair:
    return s.clamp(0.0, 1.0), ((s >= 0) & (s <= 1)).to(s.dtype)


def tanh(s: torch.Tensor) -> Pair:
    r = torch.tanh(s)
    return r, 1.0 - r * r


ACTIVATIONS: dict[str, Callable[[torch.Tensor], Pair]] = {
    "sigmoid4": sigmoid4,
    "sigmoid4_centered": sigmoid4_centered,
    "hardsigmoid": hardsigmoid,
    "tanh": tanh,
}


def get(name: str) -> Callable[[torch.Tensor], Pair]:
    if name not in ACTIVATIONS:
        raise ValueError(f"model.activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]
