"""Activations ``rho`` and their derivatives ``rho'`` (eq 2).

``sigmoid4(x) = sigmoid(4x)`` is the paper's choice (§3.1). ``sigmoid4_centered`` is the same curve
shifted by -1/2 (so ``rho(0) = 0``); ``rho'`` is unchanged. ``sigmoid4_box`` is
``sigmoid(4 (s - 1/2))``, the same curve centred in the box [0, 1] of bounded states.
``hardsigmoid`` is Equilibrium Propagation's ``clip(x, 0, 1)``; ``tanh`` is offered for completeness.

Each activation comes in two forms with the same values:
- ``get(name)(s) -> (rho(s), rho'(s))``: returns fresh tensors (tests, analysis, small scripts);
- ``get_into(name)(s, z, d)``: writes ``rho(s)`` into ``z`` and ``rho'(s)`` into ``d`` (preallocated,
  same shape as ``s``), which is what the relaxation loop calls at every step.
For the sigmoids ``rho'`` is taken from ``r = sigmoid(4 s)`` as ``4 r (1 - r)``; for the centred one
(``z = r - 1/2``) that is ``1 - 4 z^2``.
"""

from __future__ import annotations

from typing import Callable

import torch

Pair = tuple[torch.Tensor, torch.Tensor]
Into = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]


def sigmoid4(s: torch.Tensor) -> Pair:
    r = torch.sigmoid(s * 4.0)
    return r, r * (1.0 - r) * 4.0


def sigmoid4_centered(s: torch.Tensor) -> Pair:
    r = torch.sigmoid(s * 4.0)
    d = r * (1.0 - r) * 4.0
    return r.sub_(0.5), d


def sigmoid4_box(s: torch.Tensor) -> Pair:
    r = torch.sigmoid((s - 0.5) * 4.0)
    return r, r * (1.0 - r) * 4.0


def hardsigmoid(s: torch.Tensor) -> Pair:
    return s.clamp(0.0, 1.0), ((s >= 0) & (s <= 1)).to(s.dtype)


def tanh(s: torch.Tensor) -> Pair:
    r = torch.tanh(s)
    return r, 1.0 - r * r


def _one(like: torch.Tensor) -> torch.Tensor:
    return torch.ones((), dtype=like.dtype, device=like.device)


def sigmoid4_into(s: torch.Tensor, z: torch.Tensor, d: torch.Tensor) -> None:
    torch.mul(s, 4.0, out=z).sigmoid_()
    torch.addcmul(z, z, z, value=-1.0, out=d).mul_(4.0)  # 4 (r - r^2)


def sigmoid4_centered_into(s: torch.Tensor, z: torch.Tensor, d: torch.Tensor) -> None:
    torch.mul(s, 4.0, out=z).sigmoid_().sub_(0.5)
    torch.addcmul(_one(z), z, z, value=-4.0, out=d)  # 4 r (1 - r) = 1 - 4 (r - 1/2)^2


def sigmoid4_box_into(s: torch.Tensor, z: torch.Tensor, d: torch.Tensor) -> None:
    torch.sub(s, 0.5, out=z).mul_(4.0).sigmoid_()
    torch.addcmul(z, z, z, value=-1.0, out=d).mul_(4.0)


def hardsigmoid_into(s: torch.Tensor, z: torch.Tensor, d: torch.Tensor) -> None:
    torch.clamp(s, 0.0, 1.0, out=z)
    torch.eq(z, s, out=d)  # 1 inside [0, 1] (where clamping left s unchanged), 0 outside


def tanh_into(s: torch.Tensor, z: torch.Tensor, d: torch.Tensor) -> None:
    torch.tanh(s, out=z)
    torch.addcmul(_one(z), z, z, value=-1.0, out=d)


ACTIVATIONS: dict[str, Callable[[torch.Tensor], Pair]] = {
    "sigmoid4": sigmoid4,
    "sigmoid4_centered": sigmoid4_centered,
    "sigmoid4_box": sigmoid4_box,
    "hardsigmoid": hardsigmoid,
    "tanh": tanh,
}

ACTIVATIONS_INTO: dict[str, Into] = {
    "sigmoid4": sigmoid4_into,
    "sigmoid4_centered": sigmoid4_centered_into,
    "sigmoid4_box": sigmoid4_box_into,
    "hardsigmoid": hardsigmoid_into,
    "tanh": tanh_into,
}


def get(name: str) -> Callable[[torch.Tensor], Pair]:
    if name not in ACTIVATIONS:
        raise ValueError(f"model.activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]


def get_into(name: str) -> Into:
    get(name)
    return ACTIVATIONS_INTO[name]
