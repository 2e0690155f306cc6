"""The element-wise part of a relaxation step in one pass, compiled with ``torch.compile`` (inductor).

The same equations as the eager step of :mod:`astdp.core.engine` (which stays the reference), in
the order they take once the step's matrix products are done:

    f    = rho'(s) (W z + b) + a s + c          (1) + (2) + (5); a = -1, c = 0 off the targets
    dzm <- m dzm + (1 - m) |dz|                 (18)   hidden neurons, net_s and net_l stepped
    fire = |dz| > u k dzm  (or eq 18's rule)    (17)   u from :mod:`astdp.core.draws`
    f   += beta_f fire (center + sign(dz) t_c - s)   (16) + (5)
    v   <- m_v f + (1 - m_v) v ; f = v          (19)-(20)   when momentum is on
    s   <- clip(s + eps f, lo, hi) ; s = t on exact clamps
    z, dz <- rho(s), rho(s_l) - rho(s_s)        for the next step's products and update (15)

``rho'(s)`` is recomputed from ``s`` rather than stored. What the engine's eager loop does in some
twenty whole-state passes (and a generator call for the draws) is here a few generated loops that
read ``W z + b``, ``s``, ``a``, ``c``, ``dzm`` (and ``v``) and write ``s``, ``z``, ``dz``, ``dzm``
and the column sums of ``dz``. It returns the step's convergence measure ``max |ds|`` per sample
(when tracked), the sum of the new ``|dz|`` and the number of fake targets fired.

Shapes: ``pre``, ``s``, ``v``, ``z``: per network, (B, M) views of the stepped columns (M = N minus
an exactly clamped input layer); ``dz``, ``dzm``: (B, M) (``dzm`` changes on the hidden columns
only); ``a``, ``c``: per network (B, M), the targets folded in as the engine keeps them.

Everything that decides the generated code is in a :class:`StepSpec` (a frozen dataclass); one
compiled function is kept per spec and argument layout (:func:`compiled`), and inductor's on-disk
cache serves later processes. :func:`compiler_notice` says, in one line, why compiling cannot work on
this machine, if it cannot.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import types
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from astdp.core import activations, draws
from astdp.core.fake_target import DZ_FLOOR


@dataclass(frozen=True)
class StepSpec:
    nets: int  # 2: both networks; 1: net_s alone (a shared phase)
    activation: str
    eps: tuple[float, ...]  # step size per stepped network
    bounds: tuple[float, float] | None
    momentum: float  # 1: no momentum
    fake: str  # "fire": fake targets act; "decay": only the running mean decays (dz = 0); "off"
    k: float
    t_c: float
    center: float
    m: float
    rule: str
    fake_beta: tuple[float, float]
    hidden: tuple[int, int]  # hidden columns [h0, h1) of the stepped block
    exact: tuple[tuple[int, int], ...]  # column ranges with exact clamps (keep, value)
    track: bool  # return max |ds| per sample
    track_real: bool  # max |ds| from the clipped, clamped change (else eps |f|)


def _pad(x: torch.Tensor, lo: int, width: int, value: float = 0.0) -> torch.Tensor:
    """``x`` (..., n) placed at columns ``[lo, lo + n)`` of a width ``width`` tensor, ``value`` elsewhere."""
    return F.pad(x, (lo, width - lo - x.shape[-1]), value=value)


def step(spec: StepSpec, pre, s, v, z, dz, a, c, dzm, hidden, counter, key, keeps, values, dz_cols):
    """One step's element-wise work in place on ``s``, ``v``, ``z``, ``dz``, ``dzm`` and ``counter``.

    ``pre``, ``s``, ``v``, ``z``, ``a``, ``c``: one (B, M) tensor per stepped network (tuples),
    so that every read, write and sum shares one (B, M) iteration space and each network's
    state is written where it lies (no scatter into a stacked buffer). ``hidden`` (M,): 1 on the
    hidden columns, 0 elsewhere. ``dz_cols`` (M,) takes the column sums of the new ``dz`` (the
    biases' update at the next step). Returns (max |ds| (B,) or None, sum |dz| of the new state or
    None, fake targets fired or None, and the (B, M) 0/1 of the fired ones or None: returned so
    that it is computed once and kept, not recomputed, draws included, by every pass that reads it).
    """
    dev, dtype = dz.device, dz.dtype
    rho = activations.get(spec.activation)
    h0, h1 = spec.hidden
    fired_sum = fire = t_f = None
    if spec.fake != "off":  # eq (18): the running mean of |dz| of the hidden neurons
        adz = dz.abs()
        dzm_new = torch.where(hidden > 0, dzm * spec.m + adz * (1.0 - spec.m), dzm)
        dzm.copy_(dzm_new)
        if spec.fake == "fire":  # eq (16)-(17): draws at positions b * H + (i - h0)
            index = draws.positions(dz.shape[0], h1 - h0, dev, width=dz.shape[1], first=h0)
            u = draws.uniform_at(index, draws.step_key(counter, key), dtype)
            counter.add_(1)
            if spec.rule == "algorithm1":
                fire = adz > (u * spec.k * dzm_new).clamp_min(DZ_FLOOR)
            else:
                fire = (u * dzm_new < adz * spec.k) & (adz > DZ_FLOOR)
            fire = fire.to(dtype) * hidden
            fired_sum = fire.sum()
            t_f = torch.sign(dz) * spec.t_c + spec.center
    new, dmax = [], None
    for i in range(spec.nets):
        s_i = s[i]
        _, d = rho(s_i)
        f = pre[i] * d + a[i] * s_i + c[i]  # eq (1) + (2) + (5)
        if fire is not None:
            f = f + spec.fake_beta[i] * fire * (t_f - s_i)
        if spec.momentum < 1.0:  # eq (19)-(20)
            f = v[i] * (1.0 - spec.momentum) + f * spec.momentum
        s_new = s_i + f * spec.eps[i]
        if spec.bounds is not None:
            s_new = s_new.clamp(*spec.bounds)
        v_new = f
        for (lo, hi), keep, value in zip(spec.exact, keeps, values):  # s = t on exact clamps
            keep_i = _pad(keep[i], lo, s_i.shape[1], 1.0)
            s_new = s_new * keep_i + _pad(value[i], lo, s_i.shape[1])
            v_new = v_new * keep_i
        if spec.momentum < 1.0:
            v[i].copy_(v_new)
        if spec.track:
            change = (s_new - s_i).abs() if spec.track_real else f.abs() * spec.eps[i]
            change = change.amax(dim=1)  # (B,)
            dmax = change if dmax is None else torch.maximum(dmax, change)
        new.append(s_new)
    zs = []
    for i, s_new in enumerate(new):
        s[i].copy_(s_new)
        z_i, _ = rho(s_new)
        z[i].copy_(z_i)
        zs.append(z_i)
    adz_sum = None
    if spec.nets == 2:
        dz_new = zs[1] - zs[0]
        dz.copy_(dz_new)
        dz_cols.copy_(dz_new.sum(dim=0))  # (M,): the next step's bias update, eq (15)
        adz_sum = dz_new.abs().sum()
    return dmax, adz_sum, fired_sum, fire


def compiler_notice(device: torch.device | str = "cpu") -> str | None:
    """Why the fused step cannot be compiled for ``device`` (one line), or None when it can be tried."""
    if torch.device(device).type == "cuda":
        try:
            import triton  # noqa: F401  (inductor's GPU code generator)
        except ImportError:
            return "torch.compile needs triton on CUDA, and it is not installed"
        return None
    cxx = os.environ.get("CXX") or "g++"
    if shutil.which(cxx) is None and shutil.which("c++") is None:
        return f"no C++ compiler ({cxx}) on PATH, which torch.compile needs on the CPU"
    return None


@functools.lru_cache(maxsize=None)
def compiled(spec: StepSpec, layout: tuple):
    """The compiled step for ``spec`` and one ``layout`` of its arguments (shapes, strides, dtypes,
    devices and the thread count), compiled at its first call: ``compiled(spec, layout)(*args)``.

    Each (spec, layout) gets a code object of its own and keeps no guards: the caller (the engine)
    looks the compiled step up by exactly what the guards would check, so that a step does not
    spend tens of microseconds re-checking two dozen tensors that cannot have changed.
    """
    # inductor's C++ builder warns once, on every CPU-only machine, that it found no CUDA runtime
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    name = f"step_{compiled.cache_info().currsize}"  # dynamo keeps compiled versions per code object
    code = step.__code__.replace(co_name=name, co_qualname=name)
    fn = torch.compile(types.FunctionType(code, step.__globals__, name), dynamic=False, fullgraph=True,
                       options={"guard_filter_fn": torch.compiler.skip_all_guards_unsafe})
    return functools.partial(fn, spec)


def layout(args) -> tuple:
    """What a compiled step is specialised on: every tensor's shape, strides, dtype and device."""
    return tuple((tuple(t.shape), t.stride(), t.dtype, t.device.type)
                 for a in args for t in (a if isinstance(a, tuple) else (a,)))
