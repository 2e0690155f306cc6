"""The data a relaxation run takes and returns: fake-target settings, targets, phases, run statistics.

A learner turns a batch into :class:`Phase` s, each a number of steps and a list of :class:`Target` s
(a layer, its target values and the nudging strength per network); :class:`astdp.core.engine.Relaxer`
plays them and returns :class:`RunStats`. :class:`FakeTargets` holds the settings of eq (16)-(18).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from astdp.core import fake_target


@dataclass
class FakeTargets:
    enabled: bool = True
    k: float = 50.0  # scale factor k, eq (17)-(18), > 0
    t_c: float = 0.25  # fake target magnitude t_c, eq (16), >= 0
    center: float = 0.0  # t_f = center + sign(dz) t_c; the paper's states are centred on 0
    m: float = 0.95  # running-mean factor m of |dz|, eq (18), in [0, 1)
    rule: str = "algorithm1"  # "algorithm1": P = |dz|/(k dzm);  "eq18": P = k |dz|/dzm
    beta: tuple[float, float] | None = None  # nudging of a firing fake target (None: model.beta)

    def __post_init__(self) -> None:
        if self.k <= 0:
            raise ValueError(f"model.fake_target.k must be > 0, got {self.k}")
        if self.t_c < 0:
            raise ValueError(f"model.fake_target.t_c must be >= 0, got {self.t_c}")
        if not 0.0 <= self.m < 1.0:
            raise ValueError(f"model.fake_target.m must lie in [0, 1), got {self.m}")
        if self.rule not in fake_target.RULES:
            raise ValueError(f"model.fake_target.rule must be one of {fake_target.RULES}, got {self.rule!r}")
        if self.beta is not None:
            self.beta = (float(self.beta[0]), float(self.beta[1]))


@dataclass
class Target:
    """Nudge layer ``layer`` toward ``value`` (B, n) with strength ``beta`` (2, B|1, n|1).

    ``exact``: set the neurons to ``value`` instead (in both networks, every step) where ``beta > 0``;
    neurons with ``beta == 0`` stay free.
    """

    layer: int
    value: torch.Tensor
    beta: torch.Tensor
    exact: bool = False


@dataclass
class Phase:
    steps: int
    targets: list[Target]
    learn: bool = True
    shared: bool = False  # net_l starts from net_s's state and follows it: one network for both, nothing learned


@dataclass
class RunStats:
    dz_abs: torch.Tensor  # mean |dz| over steps, neurons and samples (0-d)
    fake_rate: torch.Tensor  # fraction of hidden neurons with an active fake target (0-d)
    steps: int  # relaxation steps actually run
    converge_step: torch.Tensor | None = None  # (B,) first converged step, -1 if never
    trace: list[dict[str, torch.Tensor]] = field(default_factory=list)

    @property
    def converged(self) -> torch.Tensor:
        return self.converge_step >= 0


def beta_tensor(pair: tuple[float, float], like: torch.Tensor) -> torch.Tensor:
    """(2, 1, 1) nudging strengths of (net_s, net_l)."""
    return torch.tensor(pair, dtype=like.dtype, device=like.device).view(2, 1, 1)

