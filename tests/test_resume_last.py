"""``ckpt_path=last``: one command line for the first start and every restart."""

from __future__ import annotations

from omegaconf import OmegaConf

from astdp.lit.run import resolve_last


def test_last_is_the_run_folders_checkpoint_or_a_fresh_start(tmp_path):
    cfg = OmegaConf.create({"ckpt_path": "last", "output_dir": str(tmp_path),
                            "callbacks": {"checkpoint": {"dirpath": str(tmp_path / "ck")}}})
    resolve_last(cfg)
    assert cfg.ckpt_path is None  # nothing saved yet: start afresh
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "last.ckpt").write_bytes(b"x")
    cfg.ckpt_path = "last"
    resolve_last(cfg)
    assert cfg.ckpt_path == str(tmp_path / "ck" / "last.ckpt")
    cfg.ckpt_path = "/some/other.ckpt"
    resolve_last(cfg)
    assert cfg.ckpt_path == "/some/other.ckpt"
