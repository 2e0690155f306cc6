"""learner=ep end to end: train.py on fallback digits, and resume with Adam's moments in the checkpoint."""

from __future__ import annotations

import torch

from tests.conftest import FALLBACK_DATA
from tests.test_train import REQUIRED, _fit, _toy, read_metrics, run_dirs

EP = ["learner=ep", "learner.steps=10", "learner.free_steps=6", "learner.test_steps=10"]


def test_ep_train_and_evaluate(run_script, tmp_path):
    run_script("train.py", *FALLBACK_DATA, *EP, "logger=csv")
    (run,) = run_dirs(tmp_path)
    m = read_metrics(run)
    assert all(k in m for k in REQUIRED) and m["train/samples_seen"] == 200
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["astdp_learner"]["updates"] == 4 and len(saved["astdp_learner"]["moments"]) > 0
    assert saved["astdp_config"]["learner"]["name"] == "ep"
    proc = run_script("evaluate.py", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}")
    assert "summary: test/acc=" in proc.stdout


def test_ep_resume_equals_a_straight_run(compose_cfg, tmp_path):
    overrides = (*EP, "learner.schedule=cosine", "learner.total_batches=32")
    straight, _, _ = _fit(_toy(compose_cfg, tmp_path / "s", "trainer.max_epochs=2", *overrides), tmp_path)
    _fit(_toy(compose_cfg, tmp_path / "r", "trainer.max_epochs=1", *overrides), tmp_path)
    resumed, trainer, _ = _fit(_toy(compose_cfg, tmp_path / "r", "trainer.max_epochs=2", *overrides), tmp_path,
                               ckpt_path=str(tmp_path / "r" / "checkpoints" / "last.ckpt"))
    assert trainer.global_step == 32 and resumed.system.learner.updates == 32
    for key, value in straight.state_dict().items():
        if key.startswith("system."):
            assert torch.allclose(value, resumed.state_dict()[key], atol=1e-6), key
