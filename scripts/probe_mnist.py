"""Short MNIST probes of the core without the harness: train on a subset, test on the first test images.

The ablations in docs/FINDINGS.md were measured with this script, e.g.
    python scripts/probe_mnist.py --root ../shared/data --alpha 1e-4 --beta_in 1 1 --beta_out 0 0.5 --n_train 3200
It prints progress every 10 batches and, last, one JSON line with the settings and the accuracy.
"""

import argparse
import json
import sys
import time

import torch

from astdp.data.mnist import load_mnist
from astdp.core.network import Topology
from astdp.core.dynamics import Dynamics
from astdp.core.plasticity import Plasticity
from astdp.core.engine import FakeTargets
from astdp.learners import LEARNERS
from astdp.system import System

p = argparse.ArgumentParser()
p.add_argument("--learner", default="supervised")
p.add_argument("--act", default="sigmoid4_centered")
p.add_argument("--alpha", type=float, default=1e-4)
p.add_argument("--beta", type=float, nargs=2, default=[0.4, 0.5])
p.add_argument("--beta_in", type=float, nargs=2, default=None)
p.add_argument("--beta_out", type=float, nargs=2, default=None)
p.add_argument("--eps", type=float, nargs=2, default=[0.5, 0.4])
p.add_argument("--steps", type=int, default=240)
p.add_argument("--free", type=int, default=80)
p.add_argument("--test_steps", type=int, default=160)
p.add_argument("--fake", type=int, default=1)
p.add_argument("--k", type=float, default=50)
p.add_argument("--tc", type=float, default=0.25)
p.add_argument("--mom", type=float, default=1.0)
p.add_argument("--in_lo", type=float, default=0.0)
p.add_argument("--in_hi", type=float, default=1.0)
p.add_argument("--lab_lo", type=float, default=0.0)
p.add_argument("--lab_hi", type=float, default=1.0)
p.add_argument("--hidden", type=int, nargs="+", default=[512])
p.add_argument("--n_train", type=int, default=6400)
p.add_argument("--n_test", type=int, default=2000)
p.add_argument("--bs", type=int, default=128)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--eval_every", type=int, default=0)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--epochs", type=int, default=1)
p.add_argument("--lr_decay", type=float, default=1.0)
p.add_argument("--root", default="data")
p.add_argument("--lateral", type=int, default=None)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)
splits, source = load_mnist(a.root)
X, Y = splits["train"]
Xt, Yt = splits["test"]
a.n_test = min(a.n_test, len(Yt))
g = torch.Generator().manual_seed(a.seed)
perm = torch.randperm(len(Y), generator=g)[: a.n_train]
topo = Topology.build(784, a.hidden, 10, None if a.lateral is None else bool(a.lateral))
dyn = Dynamics(activation=a.act, eps=a.eps, beta=a.beta, beta_input=a.beta_in, beta_output=a.beta_out, momentum=a.mom)
kw = dict(steps=a.steps, input_low=a.in_lo, input_high=a.in_hi, label_low=a.lab_lo, label_high=a.lab_hi)
if a.learner in ("supervised",): kw["free_steps"] = a.free
learner = LEARNERS[a.learner](topo, dyn, **kw)
sysm = System(topo, dyn, Plasticity(alpha=a.alpha), FakeTargets(enabled=bool(a.fake), k=a.k, t_c=a.tc), learner, a.bs, seed=a.seed)

def evaluate():
    correct = 0; steps = []; conv = []
    for i in range(0, a.n_test, a.bs):
        out, st = sysm.infer(Xt[i:i+a.bs], a.test_steps)
        correct += (out.argmax(1) == Yt[i:i+a.bs]).sum().item()
        conv.append(st.converged.float()); steps.append(st.converge_step.float())
    c = torch.cat(conv); s = torch.cat(steps)
    return correct / a.n_test, c.mean().item(), (s[c>0].mean().item() if c.any() else -1)

t0 = time.time(); seen = 0
for ep in range(a.epochs):
    perm = perm[torch.randperm(len(perm), generator=g)]
    for bi, i in enumerate(range(0, a.n_train - a.bs + 1, a.bs)):
        idx = perm[i:i+a.bs]
        st = sysm.train_batch(X[idx], Y[idx])
        seen += a.bs
        if not torch.isfinite(sysm.train_state.s).all():
            print("DIVERGED at", seen); sys.exit(1)
        if bi % 10 == 0:
            print(f"seen {seen} dz {st.dz_abs.item():.2e} fake {st.fake_rate.item():.3f} t {time.time()-t0:.0f}s", flush=True)
        if a.eval_every and seen % a.eval_every == 0:
            print("EVAL", seen, evaluate(), flush=True)
    sysm.relaxer.plast.alpha *= a.lr_decay
acc, conv, steps = evaluate()
print(json.dumps(dict(args=vars(a), source=source, acc=acc, conv=conv, steps=steps, seen=seen, wall=time.time()-t0)))
