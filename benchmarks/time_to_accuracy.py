"""Time to accuracy: training seconds and samples until a net reaches 85 / 90 / 95 / 97 % validation accuracy.

    python -m benchmarks.time_to_accuracy --root ../shared/data             # one epoch each (~7 min)
    python -m benchmarks.time_to_accuracy --root ../shared/data --quick     # each net stops at 90 %
    python -m benchmarks.time_to_accuracy --learners supervised bp_ce --threads 1 2
    python -m benchmarks.time_to_accuracy --root ../shared/data --learners supervised ep bp_ce --epochs 3
    python -m benchmarks.time_to_accuracy --device cuda --quick

``--eager`` adds a run of each aSTDP learner on the eager engine (``model.engine=eager``) after
the default one (``auto``: the fused engine for a run this long), for the fused engine's speed-up
in the same run. The fused step is compiled before the timed run (on a copy of the net, reported
as ``<learner>_compile_s``): training seconds never include it.

In one process, one after the other, with the same thread count, data split and data order, it
trains the default aSTDP supervised net (``learner=supervised``), the default unsupervised net
(``learner=unsupervised``) and the backprop cross-entropy baseline (``learner=bp_ce``: ReLU hidden
units, Adam 1e-3; ``bp_ce_table1`` is the paper's, ``experiment=table1_bp_ce``: sigmoid), and, when
``--learners`` names it, Equilibrium Propagation on the same network and engine (``learner=ep``), each with its defaults composed
from ``conf/`` exactly as ``python train.py <that choice>`` would (784-512-10, batch 128, the
data set's rate schedule over one epoch). Every ``--every`` training samples the
net is tested on a fixed 2,000-image validation split of the training pool (``data.split_seed=0``,
as ``data.val_size=2000`` in train.py), with the learner's test-time inference; only training is
timed (``time.perf_counter`` around each training batch), never the validation.

Printed: one row per learner and target with the training seconds and samples at which the
validation accuracy first reached the target (``-`` if it did not: the best value is shown), the
peak resident memory of the process, and last one JSON line. ``--quick`` stops a learner once it
has reached 90 %. ``--device cuda`` trains and validates on the GPU (data moved there once;
each timed batch ends with a device synchronisation, so the seconds are the GPU's).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import resource
import sys
import time
from pathlib import Path

import torch

TARGETS = (0.85, 0.90, 0.95, 0.97)
LEARNERS = ("supervised", "unsupervised", "ep", "bp_ce", "bp_ce_table1")
DEFAULT_LEARNERS = ("supervised", "unsupervised", "bp_ce")
CHOICE = {"supervised": "learner=supervised", "unsupervised": "learner=unsupervised", "ep": "learner=ep",
          "bp_ce": "learner=bp_ce",  # the strong baseline: ReLU, Adam 1e-3
          "bp_ce_table1": "experiment=table1_bp_ce"}  # as in Table 1: Adam 1e-3, sigmoid hidden units
JSON_NAMES = {"supervised": "astdp", "unsupervised": "unsup", "ep": "ep", "bp_ce": "bp_ce", "bp_ce_table1": "bp_ce_table1"}
CONF = Path(__file__).resolve().parents[1] / "conf"


def compose(learner: str, root: str, overrides: list[str]):
    """The run config of ``python train.py <CHOICE[learner]> data.root=<root> data.val_size=2000 <overrides>``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose("train", overrides=[CHOICE[learner], f"data.root={root}", "logger=none",
                                                 "data.val_size=2000", "data.n_train=null", "data.n_test=null",
                                                 *overrides])


def load_data(cfg) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor], str]:
    """(train, val, source) exactly as the DataModule splits them."""
    from astdp.data.datamodule import AstdpDataModule

    node = {k: v for k, v in cfg.data.items() if k not in ("_target_", "budget", "max_epochs")}
    dm = AstdpDataModule(**node)
    dm.setup("fit")
    return dm.train_set.tensors, dm.val_set.tensors, dm.source


class AstdpNet:
    """The aSTDP system of a composed config, trained and tested through the plain-torch core."""

    def __init__(self, cfg, n_batches: int, device: str = "cpu") -> None:
        from omegaconf import OmegaConf

        from astdp.factory import build_system

        plain = lambda node: OmegaConf.to_container(node, resolve=True)  # noqa: E731
        self.learner = plain(cfg.learner)
        self.system = build_system(plain(cfg.model), self.learner, plain(cfg.depth), int(cfg.data.n_inputs),
                                   int(cfg.data.n_outputs), int(cfg.data.batch_size), seed=int(cfg.seed),
                                   device=device, image_size=cfg.data.get("image_size"))
        plast = self.system.relaxer.plast
        if plast.schedule == "cosine" and plast.total_batches is None:
            plast.total_batches = n_batches  # the run's length, as the Lightning module sets it
        # model.engine=auto, settled from the run's length as the Lightning module does
        self.engine = self.system.choose_engine(n_batches * int(self.learner["steps"]) * self.system.batch_size
                                                * self.system.topology.n)
        self.batch = 0

    def warm_up(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Compile the fused steps (training and testing shapes) on a copy; returns the seconds spent.
        The compiled steps are kept for the process, so the timed run does not pay for them."""
        if self.engine != "fused":
            return 0.0
        t0 = time.perf_counter()
        twin = copy.deepcopy(self.system)
        twin.train_batch(x, y)
        twin.infer(x, steps=int(self.learner["test_steps"]), tol=float(self.learner["tol"]), stop_when_converged=True)
        return time.perf_counter() - t0

    def train_batch(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.system.relaxer.plast.batch = self.batch
        self.system.train_batch(x, y)
        self.batch += 1

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.system.infer(x, steps=int(self.learner["test_steps"]), tol=float(self.learner["tol"]),
                                   stop_when_converged=bool(self.learner.get("infer_stop", True)))
        return out.argmax(dim=1)


class BpNet:
    """The backprop baseline of a composed config (same layer sizes), one autograd step per batch."""

    def __init__(self, cfg, n_batches: int, device: str = "cpu") -> None:
        from astdp.baselines import bp

        from omegaconf import OmegaConf

        torch.manual_seed(int(cfg.seed))
        depth = OmegaConf.to_container(cfg.depth, resolve=True)
        self.kind, self.bp = str(cfg.learner.name), bp
        self.model = bp.build(depth, int(cfg.data.n_inputs), int(cfg.data.n_outputs),  # an MLP, or a ConvNet
                              str(cfg.learner.activation)).to(device)
        self.opt = bp.make_optimizer(str(cfg.learner.optimizer), self.model.parameters(), float(cfg.learner.lr))

    def train_batch(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.bp.train_step(self.model, self.opt, self.kind, x, y)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).argmax(dim=1)


def accuracy(net, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    hits = sum(int((net.predict(x[i : i + batch]) == y[i : i + batch]).sum()) for i in range(0, len(y), batch))
    return hits / len(y)


def run_learner(name: str, root: str, every: int, epochs: int, stop_at: float | None, overrides: list[str],
                data=None, targets: tuple[float, ...] = TARGETS, device: str = "cpu") -> dict:
    """Train one learner, validating every ``every`` samples; ``reached[target] = (seconds, samples)``."""
    cfg = compose(name, root, overrides)
    train, val, source = data or load_data(cfg)
    (xs, ys), val = [(x.to(device), y.to(device)) for x, y in (train, val)]
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else lambda: None
    batch = int(cfg.data.batch_size)
    n_batches = epochs * -(-len(ys) // batch)
    net = (BpNet if name.startswith("bp_") else AstdpNet)(cfg, n_batches, device)
    compile_s = net.warm_up(xs[:batch], ys[:batch]) if hasattr(net, "warm_up") else 0.0
    order_gen = torch.Generator().manual_seed(int(cfg.seed))
    curve, seconds, samples, next_check = [], 0.0, 0, every
    reached: dict[float, tuple[float, int]] = {}

    def check() -> bool:
        acc = accuracy(net, *val, batch)
        curve.append((samples, round(seconds, 3), acc))
        print(f"  {name}: {samples:,} samples, {seconds:.1f} s of training: val acc {acc:.2%}", file=sys.stderr,
              flush=True)
        for target in targets:
            if acc >= target and target not in reached:
                reached[target] = (seconds, samples)
        return stop_at is not None and acc >= stop_at

    done = False
    for _ in range(epochs):
        order = torch.randperm(len(ys), generator=order_gen).to(device)
        for i in range(0, len(ys), batch):
            idx = order[i : i + batch]
            x, y = xs[idx], ys[idx]
            t0 = time.perf_counter()
            net.train_batch(x, y)
            sync()
            seconds += time.perf_counter() - t0
            samples += len(idx)
            if samples >= next_check:
                next_check += every
                if check():
                    done = True
                    break
        if done:
            break
    if not curve or curve[-1][0] != samples:
        check()
    label = f"{name} ({net.engine})" if isinstance(net, AstdpNet) else name
    return {"learner": label, "key": JSON_NAMES.get(name, name) + ("_eager" if "model.engine=eager" in overrides else ""),
            "source": source, "reached": reached, "curve": curve, "seconds": seconds, "samples": samples,
            "best": max(a for _, _, a in curve), "compile_s": compile_s}


def table(results: list[dict]) -> str:
    lines = ["| learner (engine) | target | train s | samples | best val acc | trained (s / samples) |",
             "|---|---|---|---|---|---|"]
    for r in results:
        for target in TARGETS:
            hit = r["reached"].get(target)
            s, n = (f"{hit[0]:.1f}", f"{hit[1]:,}") if hit else ("-", "-")
            lines.append(f"| {r['learner']} | {target:.0%} | {s} | {n} | {r['best']:.2%} | "
                         f"{r['seconds']:.1f} / {r['samples']:,} |")
    return "\n".join(lines)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def summary(results: list[dict], threads: int, device: str = "cpu") -> dict:
    machine = torch.cuda.get_device_name() if device == "cuda" else cpu_name()
    out: dict = {"threads": threads, "device": device, "machine": machine, "torch": torch.__version__,
                 "date": time.strftime("%Y-%m-%d")}
    for r in results:
        key = r["key"]
        if r["compile_s"]:
            out[f"{key}_compile_s"] = round(r["compile_s"], 1)
        for target in TARGETS[1:]:
            hit = r["reached"].get(target)
            pct = int(round(target * 100))
            out[f"{key}_s_to_{pct}"] = round(hit[0], 2) if hit else None
            out[f"{key}_samples_to_{pct}"] = hit[1] if hit else None
        out[f"{key}_best"] = round(r["best"], 4)
    for pct in (90, 95):  # the fused engine's training seconds over the eager engine's, same run
        fast, slow = out.get(f"astdp_s_to_{pct}"), out.get(f"astdp_eager_s_to_{pct}")
        if fast is not None and slow:
            out[f"fused_time_ratio_{pct}"] = round(fast / slow, 3)
    out["data_source"] = results[0]["source"] if results else None
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default="data", help="folder holding MNIST/raw (as data.root)")
    p.add_argument("--quick", action="store_true", help="stop each learner once it reaches 90 %%")
    p.add_argument("--threads", type=int, nargs="+", default=[1], help="torch thread counts, one pass each")
    p.add_argument("--learners", nargs="+", default=list(DEFAULT_LEARNERS), choices=LEARNERS)
    p.add_argument("--every", type=int, default=1280, help="validate every this many training samples (>= 1)")
    p.add_argument("--epochs", type=int, default=1, help="training epochs per learner (>= 1)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="Hydra overrides for every learner, e.g. learner.steps=40")
    p.add_argument("--eager", action="store_true",
                   help="also train every aSTDP learner with model.engine=eager, same data order (the speed-up of "
                        "the fused engine, in JSON as fused_time_ratio_90 / _95)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the nets train (default cpu)")
    args = p.parse_args(argv)
    if args.every < 1 or args.epochs < 1 or min(args.threads) < 1:
        p.error("--every, --epochs and --threads must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device")
    root = str(Path(args.root).resolve())
    data = load_data(compose("supervised", root, args.set))
    out = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        results = []
        runs = [(name, args.set) for name in args.learners]
        if args.eager:
            runs += [(name, [*args.set, "model.engine=eager"]) for name in args.learners if not name.startswith("bp_")]
        for name, overrides in runs:
            r = run_learner(name, root, args.every, args.epochs, 0.90 if args.quick else None, overrides, data,
                            device=args.device)
            curve = " ".join(f"{n}:{a:.3f}" for n, _, a in r["curve"])
            print(f"[{threads} thread(s)] {r['learner']}: {curve}", flush=True)
            results.append(r)
        print(table(results), flush=True)
        out = summary(results, threads, args.device)
        print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
