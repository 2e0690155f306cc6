"""An override of the model, learner or depth group reaches every toy experiment function.

Each toy experiment file is composed as `python train.py experiment=<name> <override>` would compose
it, on a tiny protocol, and run twice: as pinned, and with one group key changed. The results must
differ, so no group key is silently ignored (as they were when experiments copied model constants
into experiment_params).
"""

from __future__ import annotations

import pytest

from astdp.experiments import runner
from astdp.lit.build import plain

ORDER = ["experiment_params.train_cycles=1", "experiment_params.test_steps=[20]", "experiment_params.test_cycles=1",
         "learner.steps=20"]
RIVALRY = ["experiment_params.epochs=3", "learner.steps=20"]
TINY = {
    "table3_order81": ORDER,
    "table3_order83": ORDER,
    "fig3_rivalry": [*RIVALRY, "experiment_params.test_steps=60", "experiment_params.settle=0"],
    "fig4_adaptation": [*RIVALRY, "experiment_params.hold=20", "experiment_params.after=30",
                        "experiment_params.tail=5", "experiment_params.window=10"],
    "fig6_stdp": ["experiment_params.dt_range=4", "experiment_params.windows=[3]",
                  "experiment_params.betas=[[0.4,0.6]]", "experiment_params.window_for_betas=3"],
}
CHANGES = {"model": "model.beta=[0.3,0.6]", "learner": "learner.alpha=0.3", "depth": "depth.hidden=[5]"}
# which groups each function reads: the STDP protocol fixes its 3-neuron topology and learns nothing
READS = {name: ("model",) if name == "fig6_stdp" else ("model", "learner", "depth") for name in TINY}


def _run(compose_cfg, name, extra=()):
    cfg = plain(compose_cfg([f"experiment={name}", "+experiment_params.plot=false", *TINY[name], *extra]))
    fn = runner.resolve(cfg["experiment_fn"])
    return fn, fn(**runner.call_params(fn, cfg))["metrics"]


def test_every_toy_experiment_file_is_covered():
    from tests.conftest import CONF

    toy = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml") if "experiment_fn" in p.read_text())
    assert toy == sorted(TINY)


@pytest.mark.parametrize("name", sorted(TINY))
def test_group_overrides_reach_the_experiment(compose_cfg, name):
    fn, base = _run(compose_cfg, name)
    import inspect

    taken = {g for g in runner.GROUPS if g in inspect.signature(fn).parameters}
    assert taken == set(READS[name])
    for group in READS[name]:
        _, changed = _run(compose_cfg, name, [CHANGES[group]])
        moved = [k for k in base if isinstance(base[k], float) and changed.get(k) != base[k]]
        assert moved, f"{CHANGES[group]} changed nothing in experiment={name}"
