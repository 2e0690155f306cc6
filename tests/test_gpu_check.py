"""scripts/gpu_check.sh --dry-run: the plan and the JSON of results, without CUDA and within seconds."""

import json
import os
import subprocess
import sys

from tests.conftest import ROOT

STEPS = ["gpu_tests", "relax", "time_to_accuracy", "train", "conv_cifar10"]


def test_gpu_check_dry_run_writes_its_json(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run", "--root", str(tmp_path),
                           "--cifar-root", str(tmp_path / "cifar")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["dry_run"] is True and isinstance(report["cuda"], bool) and report["root"] == str(tmp_path)
    assert list(report["steps"]) == STEPS
    for name, step in report["steps"].items():
        assert step["status"] == "skipped" and step["reason"] == ("dry run" if report["cuda"] else "no CUDA")
        assert f"[{name}] at most " in proc.stdout and step["command"] in proc.stdout
    commands = {name: step["command"] for name, step in report["steps"].items()}
    assert commands["gpu_tests"].startswith(f"{sys.executable} -m pytest -m gpu")
    assert "--device cuda" in commands["relax"] and "--device cuda" in commands["time_to_accuracy"]
    assert "trainer=gpu" in commands["train"] and f"data.root={tmp_path}" in commands["train"]
    assert "depth=conv_cifar data=cifar10" in commands["conv_cifar10"]
    assert f"data.root={tmp_path / 'cifar'}" in commands["conv_cifar10"]
    assert report["ok"] is False  # nothing was checked


def test_gpu_check_refuses_an_unknown_option():
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--fast"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: unknown option --fast")
