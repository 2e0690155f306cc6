"""The precision of the relaxation's matrix products (``trainer.precision``); no equation changes.

At ``bf16-mixed`` (or ``16-mixed``, CUDA) the products of a step take bfloat16 (float16) operands:

    drive   W z + b      : (2B, span) @ (span, n_post) with z, W cast; the product added to the fp32 b
    update  W += a dz^T z: (n_post, B) @ (B, span)    with dz, z cast; the product added to the fp32 W
    Gram    z_in z_in^T D: (B, B) @ (B, n_post)       (blocks from clamped inputs; the Gram matrix cast once)
    conv    conv2d, conv_transpose2d, conv2d_weight with the maps and kernels cast

Everything else stays float32: states ``s``, velocities, ``rho(s)`` as stored, ``dz = rho(s_l) -
rho(s_s)`` (computed from the fp32 ``rho``, then cast for the update product only), the weights and
biases, every accumulation into them, the fake targets and the element-wise step. A product's result
is rounded to the low precision (as ``torch.autocast`` does; CPU BLAS offers no fp32 output from bf16
operands), then added in fp32, so the weight step ``alpha dz^T z`` is rounded relative to itself,
never to the weight it is added to.

The low-precision copy of a weight is refreshed by one cast into a preallocated buffer when the
weight has changed in place since the last cast (PyTorch's version counter of the tensor), which
is once per learning step, just before the next drive; tensors constant over a phase (the Gram
matrix, conv patches) are cast once. Lightning's own autocast is off for the aSTDP module (its
trainer runs at ``32-true``; :mod:`astdp.lit.build`): autocast would cast the out-of-place products
only, mixing dtypes with the in-place ones.
"""

from __future__ import annotations

import functools
import weakref

import torch

PRECISIONS = (None, "32-true", "bf16-mixed", "16-mixed")  # trainer.precision; None: fp32 (TF32 on CUDA)
PRODUCT_DTYPES = {None: None, "32-true": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


class Products:
    """Low-precision operands for the relaxation's products: persistent copies of the weights and of
    tensors constant over a phase, and buffers for the cast states and the products (reused)."""

    def __init__(self, dtype: torch.dtype = torch.bfloat16) -> None:
        self.dtype = dtype
        self._copies: dict[int, list] = {}  # id(source) -> [weak ref to source, copy, source version at the cast, where it lies]
        self._buffers: dict[tuple, torch.Tensor] = {}

    def copy(self, t: torch.Tensor) -> torch.Tensor:
        """The persistent low-precision copy of ``t`` (a weight, a Gram matrix), up to date now.
        :meth:`refresh` brings it up to date again after ``t`` changes in place. A copy lives as long
        as its source: the constants of past phases are freed with them."""
        entry = self._copies.get(id(t))
        # a new tensor, or a parameter whose data was replaced (a module moved by .to()): a new copy
        if entry is None or entry[0]() is not t or entry[3] != (t.data_ptr(), t.device, t.shape):
            self._copies = {k: e for k, e in self._copies.items() if e[0]() is not None}
            entry = [weakref.ref(t), torch.empty(t.shape, dtype=self.dtype, device=t.device), -1,
                     (t.data_ptr(), t.device, t.shape)]
            self._copies[id(t)] = entry
        self.refresh(t)
        return entry[1]

    def refresh(self, t: torch.Tensor) -> None:
        """One cast of ``t`` into its copy, if ``t`` changed in place since the last one."""
        entry = self._copies[id(t)]
        version = None if t.is_inference() else t._version  # made under inference_mode: no counter, so always cast
        if version is None or entry[2] != version:
            entry[1].copy_(t)
            entry[2] = version

    def buffer(self, key: tuple, shape, device: torch.device) -> torch.Tensor:
        """A low-precision buffer of ``shape``, the same one for the same ``key`` and shape."""
        full = (*key, tuple(shape), str(device))
        buf = self._buffers.get(full)
        if buf is None:
            buf = self._buffers[full] = torch.empty(shape, dtype=self.dtype, device=device)
        return buf

    def cast_op(self, key: tuple, t: torch.Tensor):
        """``(buffer, op)``: running ``op()`` casts the current values of ``t`` into ``buffer`` (same shape)."""
        buf = self.buffer(key, t.shape, t.device)
        return buf, functools.partial(buf.copy_, t)


def products_for(precision: str | None) -> Products | None:
    """The :class:`Products` of ``trainer.precision`` (None: fp32 products). Whether the device serves
    ``16-mixed`` is checked with the config (:mod:`astdp.lit.config`)."""
    if precision not in PRODUCT_DTYPES:
        raise ValueError(f"trainer.precision must be one of {list(PRECISIONS)}, got {precision!r}")
    dtype = PRODUCT_DTYPES[precision]
    return None if dtype is None else Products(dtype)
