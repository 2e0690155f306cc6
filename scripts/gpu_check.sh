#!/usr/bin/env bash
# The CUDA checks in one command (under 8 minutes on one GPU; 12 with --cifar-root), results in one JSON file:
#   gpu_tests         pytest -m gpu (tests/test_gpu.py: engine, generators, checkpoints across devices, nccl)
#   relax             python -m benchmarks.relax --device cuda --quick, 784-512-10
#   time_to_accuracy  python -m benchmarks.time_to_accuracy --device cuda --quick, supervised and bp_ce
#   train             python train.py trainer=gpu, one epoch on 4,000 training digits
#   conv_cifar10      python train.py trainer=gpu depth=conv_cifar data=cifar10, one epoch on 5,000 images
#                     (skipped unless --cifar-root DIR holds cifar-10-batches-py/)
#
#   bash scripts/gpu_check.sh                   # JSON to $OUT/gpu_check.json if $OUT is set, else outputs/gpu_check.json
#   bash scripts/gpu_check.sh --out FILE --root DIR   # DIR holds MNIST/raw (default data/; else the 5,000 offline digits)
#   bash scripts/gpu_check.sh --cifar-root DIR  # also the conv CIFAR-10 run, on DIR/cifar-10-batches-py
#   bash scripts/gpu_check.sh --dry-run         # no CUDA needed: the plan, every step skipped, the JSON written
#
# Each step runs under its own time limit and writes its output to <JSON folder>/gpu_check_logs/<step>.log;
# a failing step does not stop the others. The JSON holds `cuda`, `dry_run`, the device, and per step its
# command, status (passed, failed, timeout, skipped with a reason), seconds and figures: test counts,
# the benchmarks' last JSON lines, the training run's metrics.json. Exit status 0 when every step passed
# (a dry run: when the JSON was written).
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python}
out=${OUT:+$OUT/gpu_check.json}
out=${out:-outputs/gpu_check.json}
root=data
cifar=""
dry=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --out) out=${2:?--out needs a file}; shift ;;
    --root) root=${2:?--root needs a folder}; shift ;;
    --cifar-root) cifar=${2:?--cifar-root needs a folder}; shift ;;
    -h|--help) sed -n '2,19p' "$0" | cut -c3-; exit 0 ;;
    *) echo "error: unknown option $1 (options: --dry-run, --out FILE, --root DIR, --cifar-root DIR)" >&2; exit 2 ;;
  esac
  shift
done

mkdir -p "$(dirname "$out")"
logs="$(cd "$(dirname "$out")" && pwd)/gpu_check_logs"
mkdir -p "$logs"
steps="$logs/steps.tsv"
: > "$steps"
start=$(date +%s.%N)

"$PY" - "$logs/env.json" <<'EOF'
import json, sys, torch
cuda = torch.cuda.is_available()
env = {"cuda": cuda, "gpus": torch.cuda.device_count() if cuda else 0,
       "device": torch.cuda.get_device_name() if cuda else None, "torch": torch.__version__}
json.dump(env, open(sys.argv[1], "w"))
print("cuda: {cuda}; gpus: {gpus}; device: {device}; torch {torch}".format(**env))
EOF
[ -s "$logs/env.json" ] || exit 1
skip=""
grep -q '"cuda": true' "$logs/env.json" || skip="no CUDA"
[ "$dry" = 1 ] && skip=${skip:-dry run}

step() {  # step NAME LIMIT_S COMMAND...: run it (or record why not) and append one row to steps.tsv
  local name=$1 limit=$2 why=${skip:-$skip_step}
  shift 2
  echo "[$name] at most ${limit} s: $*"
  if [ -n "$why" ]; then
    printf '%s\tskipped\t\t\t\t%s\t%s\n' "$name" "$why" "$*" >> "$steps"
    return
  fi
  local t0 rc status=passed
  t0=$(date +%s.%N)
  timeout -k 10 "$limit" "$@" > "$logs/$name.log" 2>&1
  rc=$?
  [ $rc -ne 0 ] && status=failed
  [ $rc -eq 124 ] && status=timeout
  printf '%s\t%s\t%s\t%s\t%s\t\t%s\n' "$name" "$status" "$rc" "$t0" "$(date +%s.%N)" "$*" >> "$steps"
  echo "[$name] $status (log: $logs/$name.log)"
}

step gpu_tests 180 "$PY" -m pytest -m gpu -q -rs -p no:cacheprovider --junitxml="$logs/gpu_tests.xml"
step relax 110 "$PY" -m benchmarks.relax --device cuda --quick --nets 784-512-10 --threads 1
step time_to_accuracy 80 "$PY" -m benchmarks.time_to_accuracy --device cuda --quick --root "$root" \
  --learners supervised bp_ce --set data.download=false
step train 60 "$PY" train.py trainer=gpu logger=none "data.root=$root" data.download=false data.n_train=4000 \
  data.n_test=1000 trainer.max_epochs=1 "hydra.run.dir=$logs/train_run"
skip_step=""
if [ -z "$cifar" ]; then skip_step="no --cifar-root"
elif [ ! -d "$cifar/cifar-10-batches-py" ]; then skip_step="no $cifar/cifar-10-batches-py"; fi
step conv_cifar10 240 "$PY" train.py trainer=gpu logger=none depth=conv_cifar data=cifar10 "data.root=${cifar:-data}" \
  data.download=false data.n_train=6000 data.val_size=1000 data.n_test=1000 trainer.max_epochs=1 \
  "hydra.run.dir=$logs/conv_cifar10_run"
skip_step=""

"$PY" - "$out" "$logs" "$dry" "$root" "$start" <<'EOF'
import json, sys, time
from pathlib import Path
from xml.etree import ElementTree

out, logs, dry, root, start = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "1", sys.argv[4], float(sys.argv[5])


def last_json(log: Path):
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("{")] if log.exists() else []
    return json.loads(lines[-1]) if lines else None


def figures(name: str) -> dict:
    if name == "gpu_tests":
        xml = logs / "gpu_tests.xml"
        if not xml.exists():
            return {}
        suite = ElementTree.parse(xml).getroot()
        suite = suite if suite.tag == "testsuite" else suite[0]
        counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
        return {**counts, "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]}
    if name in ("train", "conv_cifar10"):
        metrics = logs / f"{name}_run" / "metrics.json"
        return {"metrics": json.loads(metrics.read_text())} if metrics.exists() else {}
    return {"result": last_json(logs / f"{name}.log")}


report = {**json.loads((logs / "env.json").read_text()), "dry_run": dry, "root": root,
          "date": time.strftime("%Y-%m-%d %H:%M:%S"), "steps": {}}
for row in (logs / "steps.tsv").read_text().splitlines():
    name, status, rc, t0, t1, reason, command = row.split("\t")
    entry = {"command": command, "status": status}
    if status == "skipped":
        entry["reason"] = reason
    else:
        entry.update(rc=int(rc), seconds=round(float(t1) - float(t0), 1), log=str(logs / f"{name}.log"), **figures(name))
    report["steps"][name] = entry
report["ok"] = all(s["status"] == "passed" for s in report["steps"].values())
report["seconds"] = round(time.time() - start, 1)
Path(out).write_text(json.dumps(report, indent=1) + "\n")
print(f"{out}: " + ", ".join(f"{k} {s['status']}" for k, s in report["steps"].items()))
sys.exit(0 if report["ok"] or dry else 1)
EOF
