"""Adaptive fake targets on hidden neurons, eq (16)-(18) and Algorithm 1.

    dzm_i <- m * dzm_i + (1 - m) * |dz_i|                       (running mean, eq 18)
    fire_i  =  |dz_i| > u_i * k * dzm_i,  u_i ~ U(0, 1)          (Algorithm 1, default)
            i.e. with probability min(1, |dz_i| / (k * dzm_i))
    fire_i  =  u_i < k * |dz_i| / dzm_i                          (eq 18 as printed, rule="eq18")
    t_f_i   =  center + sign(dz_i) * t_c                         (eq 16)

The paper's states are centred on 0, so its fake targets are ``+-t_c``. States bounded to
``[0, 1]`` are centred on 0.5: there ``center = 0.5`` keeps a fake target on the side that ``dz``
points to (with ``center = 0`` a target of ``+t_c`` pulls every neuron above ``t_c`` down).

While it fires, hidden neuron ``i`` is nudged toward ``t_f_i`` like a visible target, with its own
beta in each network. Shapes: ``dz``, ``dzm``, ``u``: (B, N_hidden).
"""

from __future__ import annotations

import torch

RULES = ("algorithm1", "eq18")
DZ_FLOOR = 1e-9  # |dz| at or below this is rounding noise, not a signal


def fire(dz: torch.Tensor, dzm: torch.Tensor, u: torch.Tensor, k: float, rule: str = "algorithm1",
         floor: float = DZ_FLOOR) -> torch.Tensor:
    """Boolean (B, N_hidden): which fake targets act this step.

    ``|dz| <= floor`` never fires: a difference at rounding level between two identical networks
    is no signal, and firing on it would amplify it to ``t_c``.
    """
    significant = dz.abs() > floor
    if rule == "algorithm1":
        return (dz.abs() > u * k * dzm) & significant
    if rule == "eq18":
        return (u * dzm < k * dz.abs()) & significant
    raise ValueError(f"model.fake_target.rule must be one of {RULES}, got {rule!r}")


def firing_probability(dz: torch.Tensor, dzm: torch.Tensor, k: float, rule: str = "algorithm1") -> torch.Tensor:
    """Closed form of the Bernoulli parameter of :func:`fire` (used by the tests)."""
    ratio = dz.abs() / dzm.clamp_min(1e-30)
    p = ratio / k if rule == "algorithm1" else ratio * k
    return p.clamp(0.0, 1.0)


def value(dz: torch.Tensor, t_c: float, center: float = 0.0) -> torch.Tensor:
    """eq (16): ``center + sign(dz) * t_c``."""
    return center + torch.sign(dz) * t_c
