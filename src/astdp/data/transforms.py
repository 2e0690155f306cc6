"""Per-channel normalisation and training-time augmentation of flat, channel-major images.

Images travel as float32 rows ``(n, C*H*W)``, channel-major (``x.view(n, C, H, W)`` is the image).

- Normalisation (``data.normalize``): ``x_c <- (x_c - mean_c) / std_c`` for each channel ``c``, the
  means and deviations taken over the training files (all of them, before the validation split;
  never the test files) unless given (``data.mean``, ``data.std``).
- Augmentation (``data.augment``): a training image is padded by ``pad`` pixels on every side (with
  the value a black pixel has, after normalisation if that is on), cropped back to ``H x W`` at a
  random offset and, where the data set allows, mirrored left-right with probability 1/2. The draws
  of epoch ``e`` are one table over the training set from a generator seeded by ``(seed, e)``, so
  they depend neither on the batch order nor on a resume inside the epoch, nor on which process
  or loader worker reads the sample. Validation and test images are never augmented.

No Lightning import here.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import torch
from torch.utils.data import TensorDataset


def channel_stats(x: torch.Tensor, channels: int, chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of ``x`` (n, C*H*W), summed in float64: (C,), (C,)."""
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk].view(-1, channels, x.shape[1] // channels).double()  # (b, C, H*W)
        total += part.sum((0, 2))
        squares += part.square().sum((0, 2))
    count = len(x) * (x.shape[1] // channels)
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    return mean.float(), std.float()


def normalize_(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """In place: ``(x - mean) / std`` per channel of ``x`` (n, C*H*W); returns ``x``."""
    c = len(mean)
    view = x.view(len(x), c, -1)  # (n, C, H*W)
    view.sub_(mean.view(1, c, 1)).div_(std.view(1, c, 1))
    return x


def epoch_seed(seed: int, epoch: int) -> int:
    key = hashlib.blake2b(f"augment:{seed}:{epoch}".encode(), digest_size=4).digest()  # torch seeds 32 bits
    return int.from_bytes(key, "big")


class AugmentedSet(TensorDataset):
    """A training set of flat images whose item ``(epoch, i)`` is image ``i`` cropped (and maybe
    mirrored) as epoch ``epoch``'s table says; item ``i`` alone is the image as stored.

    ``.tensors`` are the stored images, as a :class:`TensorDataset`'s are. The sampler hands out
    ``(epoch, i)`` keys (``ResumableSampler(keyed=True)``), so the epoch travels with each index.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, shape: Sequence[int], seed: int, pad: int = 4,
                 flip: bool = True, fill: torch.Tensor | None = None) -> None:
        super().__init__(x, y)
        self.shape = tuple(int(d) for d in shape)  # (C, H, W)
        if x.shape[1] != self.shape[0] * self.shape[1] * self.shape[2]:
            raise ValueError(f"images of {x.shape[1]} values do not have the shape {self.shape}")
        self.seed, self.pad, self.flip = int(seed), int(pad), bool(flip)
        self.fill = torch.zeros(self.shape[0]) if fill is None else fill.float().reshape(self.shape[0])  # (C,)
        self._table: tuple[int, torch.Tensor, torch.Tensor] | None = None

    def draws(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Epoch ``epoch``'s crop offsets (n, 2) in [0, 2 * pad] and mirror flags (n,)."""
        if self._table is None or self._table[0] != epoch:
            gen = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
            n = len(self.tensors[1])
            offsets = torch.randint(0, 2 * self.pad + 1, (n, 2), generator=gen)
            mirror = torch.rand(n, generator=gen) < 0.5
            self._table = (epoch, offsets, mirror & self.flip)
        return self._table[1], self._table[2]

    def augment(self, i: int, epoch: int) -> torch.Tensor:
        c, h, w = self.shape
        p = self.pad
        offsets, mirror = self.draws(epoch)
        dy, dx = (int(v) for v in offsets[i])
        canvas = self.fill.view(c, 1, 1).repeat(1, h + 2 * p, w + 2 * p)  # (C, H + 2p, W + 2p)
        canvas[:, p : p + h, p : p + w] = self.tensors[0][i].view(c, h, w)
        out = canvas[:, dy : dy + h, dx : dx + w]  # (C, H, W)
        return (out.flip(-1) if mirror[i] else out).reshape(-1)  # (C*H*W,), channel-major

    def __getitem__(self, key):
        if isinstance(key, tuple):
            epoch, i = key
            return self.augment(int(i), int(epoch)), self.tensors[1][i]
        return super().__getitem__(key)
