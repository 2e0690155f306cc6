"""learner=ep through the Lightning module: training, a checkpoint with Adam's moments, exact resume."""

from __future__ import annotations

import torch

from tests.test_train import _fit, _toy

EP = ["learner=ep", "learner.steps=10", "learner.free_steps=6", "learner.test_steps=10"]


def test_ep_resume_equals_a_straight_run(compose_cfg, tmp_path):
    overrides = (*EP, "learner.schedule=cosine", "learner.total_batches=32")
    straight, _, _ = _fit(_toy(compose_cfg, tmp_path / "s", "trainer.max_epochs=2", *overrides), tmp_path)
    _fit(_toy(compose_cfg, tmp_path / "r", "trainer.max_epochs=1", *overrides), tmp_path)
    ckpt = tmp_path / "r" / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert saved["astdp_learner"]["updates"] == 16 and len(saved["astdp_learner"]["moments"]) > 0
    assert saved["astdp_config"]["learner"]["name"] == "ep"
    resumed, trainer, _ = _fit(_toy(compose_cfg, tmp_path / "r", "trainer.max_epochs=2", *overrides), tmp_path,
                               ckpt_path=str(ckpt))
    assert trainer.global_step == 32 and resumed.system.learner.updates == 32
    assert resumed.system.net.pairs == "tied"
    for key, value in straight.state_dict().items():
        if key.startswith("system."):
            assert torch.allclose(value, resumed.state_dict()[key], atol=1e-6), key
