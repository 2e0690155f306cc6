"""Relaxation speed of the aSTDP engine against same-run matrix-product throughput.

    python -m benchmarks.relax            # full run (< 5 min on 2 CPU cores)
    python -m benchmarks.relax --quick    # fewer repeats, deep nets' batch figures estimated (< 1 min)
    python -m benchmarks.relax --threads 1 2 --device cpu|cuda
    python -m benchmarks.relax --quick --threads 1 --precision bf16-mixed   # adds fp32 / bf16 batch times

For 784-512-10 and the deep nets, batch 128, float32, the supervised learner (T = 240: 80 free +
160 clamped steps), fake targets on, alpha = 1e-4, in one of two readings (``--reading``):
``bounded`` (the default model: states in [0, 1], inputs set exactly, so the blocks into the input
layer neither run nor count; no lateral block) or ``unbounded`` (inputs nudged, every block runs;
784-512-10 with its lateral hidden block):

- training steps/s: clamped-phase steps with learning and fake targets;
- inference steps/s: inputs clamped, no learning, convergence tracked;
- samples/s of one full training batch (240 steps) and of test inference (starts from a state
  settled on other data, stops once every sample has ``max|ds| < 1e-3``, at most 240 steps; the
  steps used are shown). ``--quick`` times the full batch only for 784-512-10 and takes the deep
  nets' as 240 training steps (marked ``~``);
- ``defer_speedup``: a full training batch with the blocks from exactly clamped inputs run once
  per phase (the engine's default) over the same batch with them run at every step
  (``Relaxer.defer_clamped = False``), same run;
- ``shared x`` (``shared_free_speedup``): a full training batch with the paper's free phase (both
  networks, learning on) over the same batch with a shared one (``learner.shared_free``: net_s
  alone, no updates), alternating, every net;
- peak memory: CPU, growth of the process's max RSS while one net is built and run (each net runs
  in its own process); CUDA, ``torch.cuda.max_memory_allocated``;
- matmul: plain ``torch.matmul`` on fresh operands of exactly the GEMMs one step needs: per block
  ``(2B, span) @ (span, n_post)`` (forward, both networks) and ``(n_post, B) @ (B, span)`` (update).

``--nets conv_mnist`` adds ``depth=conv_mnist``'s net (two conv blocks with 2x2 average pooling, then 10
outputs): its "matmul" side is the same step's conv products through the blocks' own calls (drive and
feedback of the conv-to-conv block on both networks' rows, each kernel's update; the block from the
clamped inputs only its update, from the inputs unfolded once per phase, as the engine runs it),
counted at 2 FLOPs per multiply-add.

``train_step_ratio`` = achieved FLOP/s / matmul FLOP/s, counting only connected-block FLOPs
(``2 * 2B * n_post * span`` forward + ``2 * B * n_post * span`` update per block), i.e. the matmul
time of one step divided by the engine's time per step. Engine and matmul chunks alternate, and
each figure is the best of the repeats, so that load from other processes hits both alike; the
median of the paired ratios is reported beside it, and the ratio of process CPU times
(``ratio cpu``), which time lost to other processes does not inflate. For 784-512-10 the same ratio is also taken
with fake targets off (their cost is a uniform draw per hidden neuron and step, which no GEMM
count includes), and the dense reference step of the tests (``tests/reference.py``) is timed in
the same run for the speedup column (``ref x``).

Worker processes inherit the environment's OpenMP wait (astdp sets none; see
``src/astdp/__init__.py``) unless ``--omp-wait-policy`` sets a policy (and drops any
``GOMP_SPINCOUNT``, which would override it): ``PASSIVE`` threads sleep at once and pay a wake-up
in each of a step's dozens of short parallel regions; on a machine shared with other busy
processes, threads that spin stall every parallel region (two-thread figures drop by 10x or more,
matmul included).

The timed system runs ``model.engine=fused`` (``--step``): what ``auto`` runs for a long run.
``fused x`` (``fused_speedup``) is a full training batch of the eager engine over one of the fused
engine, same net and data, alternating in one process, at the first thread count; ``thread x``
(``thread_speedup``) is the timed engine's full batch at the first thread count over the last, in
turns in one process (after each switch of the thread count one batch runs untimed).

``--precision bf16-mixed`` (``trainer.precision``, :mod:`astdp.core.precision`) also times the
training batch of every net at fp32 and at that precision (a second system, same seed and data,
alternating, at the first thread count): ``prec x`` (``precision_speedup``) is the fp32 batch time
over the low-precision one. ``--quick`` times full batches for 784-512-10 and takes the deep nets'
from 4 training steps (marked ``~``). The header and the JSON say whether the CPU has bf16
instructions (``avx512_bf16``, ``amx_bf16``); without them bf16 products are emulated and slower
than fp32.

The last line printed is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

NETS = {  # name: (hidden layers: sizes, or conv layers as in a depth file; lateral)
    "784-512-10": ([512], True),
    "784-512-512-10": ([512, 512], False),
    "784-512-512-512-10": ([512, 512, 512], False),
    "784-500-500-500-10": ([500, 500, 500], False),
    "conv_mnist": ([{"channels": 16, "kernel": 5, "pool": 2}, {"channels": 32, "kernel": 5, "pool": 2}], False),
}
CONV_NETS = ("conv_mnist",)  # in the run only when --nets names them (a conv batch takes seconds)
MAIN = "784-512-10"
READINGS = {  # name: (model config, lateral block of 784-512-10)
    "bounded": ({"activation": "hardsigmoid", "eps": [0.5, 0.5], "bounds": [0.0, 1.0], "input_clamp": "exact",
                 "beta_output": [0.0, 1.0]}, False),
    "unbounded": ({}, True),
}
BATCH, STEPS, FREE_STEPS, TOL = 128, 240, 80, 1e-3


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"{cpu_name()}, {os.cpu_count()} logical cores"


# -- measured pieces ------------------------------------------------------------------------------------
class Bench:
    """One net on one device: the system, its data, and timers."""

    def __init__(self, net_name: str, device: str, engine: str | None, seed: int = 0, reading: str = "bounded",
                 step: str = "fused", precision: str | None = None):
        from astdp.factory import build_system

        self.name = net_name
        hidden, lateral = NETS[net_name]
        model, main_lateral = READINGS[reading]
        model = {**model, "engine": step}
        lateral = main_lateral if net_name == MAIN else lateral
        self.device = torch.device(device)
        depth = {"hidden": hidden, "lateral": lateral, "input_shape": [1, 28, 28]}
        self.sys = build_system(model, {"name": "supervised", "alpha": 1e-4, "steps": STEPS, "free_steps": FREE_STEPS},
                                depth, 784, 10, BATCH, seed=seed, device=device)
        if engine:  # another implementation of the same Relaxer API, e.g. an older engine
            r = self.sys.relaxer
            self.sys.relaxer = importlib.import_module(engine).Relaxer(r.net, r.dyn, r.plast, r.fake,
                                                                        generator=r.generator)
        if precision is not None:
            self.sys.relaxer.set_precision(precision)
        g = torch.Generator().manual_seed(seed + 1)
        self.x = [torch.rand(BATCH, 784, generator=g).to(device) for _ in range(2)]
        self.y = [torch.randint(0, 10, (BATCH,), generator=g).to(device) for _ in range(2)]
        t = self.sys.topology
        skip_input = self.sys.dynamics.input_clamp == "exact"  # those blocks never run
        shapes = [(t.sizes[b.post], b.hi - b.lo) for b in t.blocks  # (n_post, span)
                  if not (skip_input and b.post == t.input_layer)]
        self.flops_fwd = sum(2 * 2 * BATCH * n * span for n, span in shapes)
        self.flops_upd = sum(2 * BATCH * n * span for n, span in shapes)
        opts = {"device": self.device}
        self.mm_fwd = [(torch.rand(2 * BATCH, span, **opts), torch.rand(span, n, **opts)) for n, span in shapes]
        self.mm_upd = [(torch.rand(n, BATCH, **opts), torch.rand(BATCH, span, **opts)) for n, span in shapes]
        self.conv_fwd, self.conv_upd = self._conv_products(skip_input, opts)
        learner = self.sys.learner
        self.train_phase = learner.phases(self.x[0], self.y[0])[-1]  # clamped phase: inputs + labels
        self.infer_targets = [learner.input_target(self.x[1])]

    def _conv_products(self, clamped_input: bool, opts: dict) -> tuple[list, list]:
        """The conv blocks' products of one training step, as plain calls on fresh operands (their FLOPs
        join ``flops_fwd`` / ``flops_upd``): per block the drive of both networks' receiving maps and the
        feedback to the sending maps (2B rows) and the kernel update (B rows); a block from exactly
        clamped inputs only its update, from the inputs unfolded once (the engine's own path)."""
        t, fwd, upd = self.sys.topology, [], []
        for conv, w in zip(t.convs, self.sys.net.kernels):
            macs = conv.positions * w.numel()  # multiply-adds of one row's convolution
            w = torch.rand_like(w)
            z2, z1 = torch.rand(2 * BATCH, t.n, **opts), torch.rand(BATCH, t.n, **opts)
            if clamped_input and conv.pre == t.input_layer:
                rows = conv.patches(z1)[1]
                upd.append(functools.partial(conv.update_patches, z1, rows))
                self.flops_upd += 2 * BATCH * macs
                continue
            fwd += [functools.partial(conv.drive, z2, w), functools.partial(conv.feedback, z2, w)]
            upd.append(functools.partial(conv.update, z1, z1))
            self.flops_fwd += 2 * 2 * 2 * BATCH * macs  # drive and feedback
            self.flops_upd += 2 * 2 * BATCH * macs  # both terms of the tied kernel's update
        return fwd, upd

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def timed(self, fn) -> float:
        """Wall-clock seconds of ``fn()``; the process CPU seconds go to ``self.cpu``."""
        self.sync()
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        self.sync()
        self.cpu = time.process_time() - c0
        return time.perf_counter() - t0

    def train_steps(self, k: int) -> float:
        from astdp.core.engine import Phase

        return self.timed(lambda: self.sys.relaxer.run(self.sys.train_state, [Phase(k, self.train_phase.targets)]))

    def train_steps_without_fake(self, k: int) -> float:
        fake = self.sys.relaxer.fake
        enabled, fake.enabled = fake.enabled, False
        try:
            return self.train_steps(k)
        finally:
            fake.enabled = enabled

    def infer_steps(self, k: int) -> float:
        from astdp.core.engine import Phase

        phase = Phase(k, self.infer_targets, learn=False)
        return self.timed(lambda: self.sys.relaxer.run(self.sys.eval_state, [phase], alpha=0.0, fake_on=False,
                                                       track_tol=TOL))

    def matmul_steps(self, k: int) -> tuple[float, float]:
        def fwd():
            for _ in range(k):
                for a, b in self.mm_fwd:
                    torch.matmul(a, b)
                for op in self.conv_fwd:
                    op()

        def upd():
            for _ in range(k):
                for a, b in self.mm_upd:
                    torch.matmul(a, b)
                for op in self.conv_upd:
                    op()

        t_fwd = self.timed(fwd)
        c_fwd = self.cpu
        t_upd = self.timed(upd)
        self.cpu += c_fwd
        return t_fwd, t_upd

    def full_batch(self, defer: bool = True, shared: bool = False) -> float:
        relaxer, learner = self.sys.relaxer, self.sys.learner
        was, relaxer.defer_clamped = getattr(relaxer, "defer_clamped", True), defer
        learner.shared_free = shared
        try:
            return self.timed(lambda: self.sys.train_batch(self.x[0], self.y[0]))
        finally:
            relaxer.defer_clamped, learner.shared_free = was, False

    def test_inference(self) -> tuple[float, int]:
        self.sys.infer(self.x[1], stop_when_converged=True, tol=TOL)  # state settled on other data
        out = {}

        def go():
            out["stats"] = self.sys.infer(self.x[0], stop_when_converged=True, tol=TOL)[1]

        return self.timed(go), out["stats"].steps

    def reference_steps(self, k: int) -> float | None:
        try:
            from tests.reference import DenseNet, RefState, reference_step
        except ImportError:  # run from outside the repository root
            return None
        sysm = self.sys
        t = sysm.topology
        net = DenseNet.of(sysm.net)
        st = sysm.train_state
        ref = RefState(st.s.clone(), st.v.clone(), st.dzm.clone())
        slices = [t.slice(layer) for layer in range(t.n_layers)]
        gen = torch.Generator(self.device).manual_seed(0)
        r = sysm.relaxer

        def go():
            for _ in range(k):
                reference_step(net, ref, t.hidden_slice, self.train_phase.targets, r.dyn, r.plast, r.fake,
                               r.plast.alpha, r.fake.enabled, gen, slices)

        return self.timed(go)


def alternate(fns: list, rounds: int) -> list[float]:
    """The best of ``rounds`` timings of each of ``fns`` (seconds), run in turn: load from other
    processes hits all of them alike."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def fused_speedup(bench: Bench, args, rounds: int) -> float:
    """A full training batch of the eager engine over one of the fused engine, same net, seeds and
    batch, alternating in this process (both warmed up first: the fused step's compile excluded)."""
    eager = Bench(bench.name, args.device, None, reading=args.reading, step="eager")
    eager.full_batch(), bench.full_batch()
    t_eager, t_fused = alternate([eager.full_batch, bench.full_batch], rounds)
    return t_eager / t_fused


def precision_figures(bench: Bench, args, full: bool) -> dict:
    """A training batch at fp32 (``bench``) and at ``args.precision`` (a second system, same net, seed
    and data), alternating, both warmed up first; ``full``: whole batches, else 4 clamped-phase
    training steps scaled to the batch's ``STEPS`` (an estimate)."""
    low = Bench(bench.name, args.device, args.engine, reading=args.reading, step=args.step, precision=args.precision)
    if full:
        low.full_batch(), bench.full_batch()
        t32, tlow = alternate([bench.full_batch, low.full_batch], 1 if args.quick else 2)
    else:
        k = 4
        low.train_steps(2), bench.train_steps(2)
        t32, tlow = (t / k * STEPS for t in alternate([lambda: bench.train_steps(k), lambda: low.train_steps(k)], 2))
    return {"precision_batch_s_fp32": t32, "precision_batch_s": tlow, "precision_speedup": t32 / tlow,
            "precision_estimated": not full}


def cpu_bf16() -> dict:
    """What this CPU offers bf16 products: torch's CPU capability and the bf16 flags of /proc/cpuinfo."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return {"capability": torch.backends.cpu.get_cpu_capability(),
            "bf16_flags": sorted(f for f in flags if "bf16" in f) or None,
            "avx512f": "avx512f" in flags}


def thread_speedup(bench: Bench, threads: list[int], rounds: int) -> float:
    """A full training batch at ``threads[0]`` over one at ``threads[-1]``, in turns in this process:
    each turn sets the thread count, runs one batch untimed (the switch of thread pools and, the first
    time, the compile for that count) and times the next."""
    best = {n: float("inf") for n in (threads[0], threads[-1])}
    for _ in range(rounds):
        for n in best:
            torch.set_num_threads(n)
            bench.full_batch()
            t0 = time.perf_counter()
            bench.full_batch()
            best[n] = min(best[n], time.perf_counter() - t0)
    return best[threads[0]] / best[threads[-1]]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def measure(net_name: str, threads: int, args, first: bool) -> dict:
    """All figures for one net at one thread count (run inside a worker process)."""
    torch.set_num_threads(threads)
    quick, device = args.quick, args.device
    main = net_name == MAIN
    repeats, k = (10, 2) if quick else (25, 2)  # short alternating chunks: both sides see the same load
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss0 = peak_rss_mib()
    bench = Bench(net_name, device, args.engine, reading=args.reading, step=args.step)
    bench.train_steps(2)
    bench.infer_steps(2)
    bench.matmul_steps(1)
    res: dict = {"threads": threads}

    full = not quick or main
    if full:
        t_batch = min(bench.full_batch() for _ in range(1 if quick else 2))
        t_batch_per_step = min(bench.full_batch(defer=False) for _ in range(1 if quick else 2))
        t_test, test_steps = min(bench.test_inference() for _ in range(1 if quick else 2))
    pairs = [(bench.full_batch(), bench.full_batch(shared=True)) for _ in range(3 if quick else 4)]  # first: warm-up
    res["shared_free_speedup"] = min(a for a, _ in pairs[1:]) / min(b for _, b in pairs[1:])
    if first:  # memory of building and running this net, taken before the timing loops
        if device == "cuda":
            res["peak_mem_mib"] = torch.cuda.max_memory_allocated() / 2**20
        else:
            res["peak_mem_mib"] = peak_rss_mib() - rss0

    train, infer, fwd, upd, ratios, nofake, cpu_train, cpu_mm = [], [], [], [], [], [], [], []
    for _ in range(repeats):
        if main:
            nofake.append(bench.train_steps_without_fake(k) / k)
        tt = bench.train_steps(k)
        cpu_train.append(bench.cpu)
        ti = bench.infer_steps(k)
        tf, tu = bench.matmul_steps(k)
        cpu_mm.append(bench.cpu)
        train.append(tt / k)
        infer.append(ti / k)
        fwd.append(tf / k)
        upd.append(tu / k)
        ratios.append((tf + tu) / tt)
    t_train, t_infer, t_fwd = min(train), min(infer), min(fwd)
    t_mm = min(f + u for f, u in zip(fwd, upd))
    flops = bench.flops_fwd + bench.flops_upd
    res.update({
        "train_steps_per_s": 1.0 / t_train,
        "infer_steps_per_s": 1.0 / t_infer,
        "engine_gflops": flops / t_train / 1e9,
        "matmul_gflops": flops / t_mm / 1e9,
        "train_step_ratio": t_mm / t_train,
        "train_step_ratio_median_pair": statistics.median(ratios),
        "train_step_ratio_cpu_time": min(cpu_mm) / min(cpu_train),  # process CPU time: blind to preemption
        "infer_step_ratio": t_fwd / t_infer,  # forward GEMMs only
        "step_ms": t_train * 1e3,
        "matmul_step_ms": t_mm * 1e3,
        "flops_per_step": flops,
    })
    if full:
        res.update({"train_samples_per_s": BATCH / t_batch, "test_samples_per_s": BATCH / t_test,
                    "test_steps": test_steps, "estimated": False,
                    "defer_speedup": t_batch_per_step / t_batch})  # clamped-input blocks once per phase vs every step
    else:  # quick run, deep nets: a full batch is STEPS training steps, test inference at most STEPS steps
        res.update({"train_samples_per_s": BATCH / (STEPS * t_train), "test_samples_per_s": BATCH / (STEPS * t_infer),
                    "test_steps": STEPS, "estimated": True})
    if first and args.step == "fused" and args.engine is None:
        res["fused_speedup"] = fused_speedup(bench, args, 3 if quick else 5)
    if first and args.precision:
        res.update(precision_figures(bench, args, full))
    if main:
        res["train_step_ratio_without_fake"] = t_mm / min(nofake)
        ref = [bench.reference_steps(2) for _ in range(2 if quick else 3)]
        if ref[0] is not None:
            t_ref = min(ref) / 2
            res["reference_step_ms"] = t_ref * 1e3
            res["reference_speedup"] = t_ref / t_train
    return res


def worker(args) -> None:
    out = {}
    for i, threads in enumerate(args.threads):
        out[threads] = measure(args.worker, threads, args, first=i == 0)
    if len(args.threads) > 1 and args.device == "cpu":
        bench = Bench(args.worker, args.device, args.engine, reading=args.reading, step=args.step)
        out[args.threads[0]]["thread_speedup"] = thread_speedup(bench, args.threads, 3 if args.quick else 5)
    print("RESULT " + json.dumps(out))


# -- driver -----------------------------------------------------------------------------------------------
def table(results: dict, threads: list[int]) -> str:
    head = ("net", "thr", "train st/s", "infer st/s", "train smp/s", "test smp/s (steps)", "peak MiB",
            "matmul GF/s", "engine GF/s", "ratio", "ratio med", "ratio cpu", "ref x", "shared x", "fused x", "thread x",
            "prec x")
    rows = [head]
    for name, by_thr in results.items():
        for thr in threads:
            r = by_thr[str(thr)]
            est = "~" if r["estimated"] else ""
            rows.append((
                name, str(thr), f"{r['train_steps_per_s']:.1f}", f"{r['infer_steps_per_s']:.1f}",
                f"{est}{r['train_samples_per_s']:.1f}", f"{est}{r['test_samples_per_s']:.0f} ({r['test_steps']})",
                f"{r['peak_mem_mib']:.0f}" if "peak_mem_mib" in r else "", f"{r['matmul_gflops']:.1f}",
                f"{r['engine_gflops']:.1f}", f"{r['train_step_ratio']:.2f}", f"{r['train_step_ratio_median_pair']:.2f}",
                f"{r['train_step_ratio_cpu_time']:.2f}",
                f"{r['reference_speedup']:.1f}" if "reference_speedup" in r else "", f"{r['shared_free_speedup']:.2f}",
                f"{r['fused_speedup']:.2f}" if "fused_speedup" in r else "",
                f"{r['thread_speedup']:.2f}" if "thread_speedup" in r else "",
                (("~" if r["precision_estimated"] else "") + f"{r['precision_speedup']:.2f}") if "precision_speedup" in r
                else "",
            ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats; deep nets' full-batch figure from step rates")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch CPU thread counts (default: 1 2)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--reading", choices=list(READINGS), default="bounded", help="model reading (default: bounded)")
    p.add_argument("--nets", nargs="+", default=[n for n in NETS if n not in CONV_NETS], choices=list(NETS),
                   help="default: the dense nets; conv_mnist (1x28x28 -> 16 -> 32 maps, depth=conv_mnist) on request")
    p.add_argument("--engine", default=None, help="module providing another Relaxer to time instead (same API)")
    p.add_argument("--step", choices=("fused", "eager"), default="fused",
                   help="model.engine of the timed system (default fused, what model.engine=auto runs for long runs)")
    p.add_argument("--omp-wait-policy", default="inherit", choices=("PASSIVE", "ACTIVE", "inherit"),
                   help="OMP_WAIT_POLICY of the measuring processes (default inherit: the environment's, else "
                        "OpenMP's own spin; PASSIVE: waiting threads sleep at once; ACTIVE: they spin)")
    p.add_argument("--precision", choices=("bf16-mixed", "16-mixed"), default=None,
                   help="also time the training batch at fp32 and at this precision (trainer.precision)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.device == "cuda":
        if not torch.cuda.is_available():
            p.error("--device cuda: no CUDA device")
        args.threads = args.threads[:1]
    if args.precision == "16-mixed" and args.device != "cuda":
        p.error("--precision 16-mixed needs --device cuda; on the CPU use bf16-mixed")
    if args.worker:
        return worker(args)

    t0 = time.perf_counter()
    env = dict(os.environ)
    if args.omp_wait_policy != "inherit":
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy
        env.pop("GOMP_SPINCOUNT", None)  # a spin count would override the policy
    wait_policy = env.get("OMP_WAIT_POLICY") or f"unset, GOMP_SPINCOUNT={env.get('GOMP_SPINCOUNT', 'unset')}"
    print(f"device: {device_name(args.device)}; torch {torch.__version__}; threads {args.threads}; "
          f"OMP_WAIT_POLICY={wait_policy}; batch {BATCH}; T = {STEPS}; float32; "
          f"{'quick' if args.quick else 'full'} run; {args.reading} reading" + (f"; engine {args.engine}" if args.engine else "")
          + (f"; precision fp32 and {args.precision}" if args.precision else ""), flush=True)
    if args.precision and args.device == "cpu":
        bf = cpu_bf16()
        print(f"CPU bf16: torch capability {bf['capability']}; bf16 instructions: "
              f"{', '.join(bf['bf16_flags']) if bf['bf16_flags'] else 'none (bf16 products emulated)'}", flush=True)
    results = {}
    for name in args.nets:  # one process per net: a clean max-RSS baseline for its peak memory
        cmd = [sys.executable, "-m", "benchmarks.relax", "--worker", name, "--device", args.device,
               "--threads", *map(str, args.threads)] + (["--quick"] if args.quick else [])
        cmd += ["--engine", args.engine] if args.engine else []
        cmd += ["--reading", args.reading, "--step", args.step, "--omp-wait-policy", args.omp_wait_policy]
        cmd += ["--precision", args.precision] if args.precision else []
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"benchmark worker for {name} failed")
        results[name] = json.loads(line[-1][len("RESULT "):])
        print(f"  {name}: done ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(table(results, args.threads))
    summary = {"device": device_name(args.device), "torch": torch.__version__, "threads": args.threads,
               "omp_wait_policy": wait_policy, "quick": args.quick, "reading": args.reading, "batch": BATCH, "engine": args.engine or "astdp.core.engine",
               "seconds": round(time.perf_counter() - t0, 1)}
    if MAIN in results:
        for thr in args.threads:
            r = results[MAIN][str(thr)]
            summary[f"train_step_ratio_{thr}t"] = round(r["train_step_ratio"], 3)
            summary[f"infer_step_ratio_{thr}t"] = round(r["infer_step_ratio"], 3)
            summary[f"train_step_ratio_without_fake_{thr}t"] = round(r["train_step_ratio_without_fake"], 3)
            summary[f"train_step_ratio_cpu_time_{thr}t"] = round(r["train_step_ratio_cpu_time"], 3)
            if "reference_speedup" in r:
                summary[f"reference_speedup_{thr}t"] = round(r["reference_speedup"], 1)
            if "defer_speedup" in r:
                summary[f"defer_speedup_{thr}t"] = round(r["defer_speedup"], 2)
        summary["train_step_ratio"] = summary[f"train_step_ratio_{args.threads[0]}t"]
    if args.precision:
        summary["precision"] = args.precision
        if args.device == "cpu":
            summary["cpu_bf16"] = cpu_bf16()
    for key in ("fused_speedup", "thread_speedup", "precision_speedup"):
        found = {name: round(by[str(args.threads[0])][key], 3) for name, by in results.items() if key in by[str(args.threads[0])]}
        if found:
            summary[key] = found
    summary["nets"] = {name: {f"{thr}t": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                              for thr, r in ((int(t), r) for t, r in by.items())} for name, by in results.items()}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
