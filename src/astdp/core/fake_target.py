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


def running_mean_(dzm: torch.Tensor, adz: torch.Tensor, m: float) -> torch.Tensor:
    """eq (18), in place: ``dzm <- m dzm + (1 - m) |dz|``."""
    return dzm.mul_(m).add_(adz, alpha=1.0 - m)


def fire_into(adz: torch.Tensor, dzm: torch.Tensor, u: torch.Tensor, k: float, rule: str, fired: torch.Tensor,
              scratch: torch.Tensor, floor: float = DZ_FLOOR) -> torch.Tensor:
    """Which fake targets act this step, written into ``fired`` as 0/1 (its dtype); returns ``fired``.

    ``adz = |dz|``; ``u`` holds the ``U(0, 1)`` draws and is overwritten, as is ``scratch`` (same
    shape). ``|dz| <= floor`` never fires: a difference at rounding level between two identical
    networks is no signal, and firing on it would amplify it to ``t_c``.
    """
    if rule == "algorithm1":  # |dz| > u k dzm, and |dz| above the floor
        torch.gt(adz, u.mul_(k).mul_(dzm).clamp_min_(floor), out=fired)
    elif rule == "eq18":  # u dzm < k |dz|, and |dz| above the floor
        torch.lt(u.mul_(dzm), torch.mul(adz, k, out=scratch), out=fired)
        fired.mul_(torch.gt(adz, floor, out=scratch))
    else:
        raise ValueError(f"model.fake_target.rule must be one of {RULES}, got {rule!r}")
    return fired


def fire(dz: torch.Tensor, dzm: torch.Tensor, u: torch.Tensor, k: float, rule: str = "algorithm1",
         floor: float = DZ_FLOOR) -> torch.Tensor:
    """Boolean (B, N_hidden): :func:`fire_into` on fresh buffers (``u`` is left as it is)."""
    fired = torch.empty_like(u)
    return fire_into(dz.abs(), dzm, u.clone(), k, rule, fired, torch.empty_like(u), floor).bool()


def firing_probability(dz: torch.Tensor, dzm: torch.Tensor, k: float, rule: str = "algorithm1") -> torch.Tensor:
    """Closed form of the Bernoulli parameter of :func:`fire` (used by the tests)."""
    ratio = dz.abs() / dzm.clamp_min(1e-30)
    p = ratio / k if rule == "algorithm1" else ratio * k
    return p.clamp(0.0, 1.0)


def value_into(dz: torch.Tensor, t_c: float, center: float, out: torch.Tensor) -> torch.Tensor:
    """eq (16) into ``out``: ``center + sign(dz) * t_c``."""
    return torch.sign(dz, out=out).mul_(t_c).add_(center)


def value(dz: torch.Tensor, t_c: float, center: float = 0.0) -> torch.Tensor:
    """eq (16): ``center + sign(dz) * t_c``."""
    return value_into(dz, t_c, center, torch.empty_like(dz))


def nudge_(force: torch.Tensor, s: torch.Tensor, fired: torch.Tensor, beta: torch.Tensor, t_f: torch.Tensor,
           beta_fired: torch.Tensor, pull: torch.Tensor) -> None:
    """eq (5) for the fake targets, in place: ``force += beta * fired * (t_f - s)``.

    ``force``, ``s``: (2, B, N_hidden) of both networks; ``fired``, ``t_f``: (B, N_hidden);
    ``beta``: (2, 1, 1); ``beta_fired`` and ``pull`` are (2, B, N_hidden) scratch buffers.
    """
    torch.mul(fired, beta, out=beta_fired)
    torch.sub(t_f, s, out=pull)
    force.addcmul_(beta_fired, pull)
