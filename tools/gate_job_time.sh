#!/usr/bin/env bash
# Time the pull-request gate job (.github/workflows/benchmarks.yml, job `gate`) on this machine, step by step,
# between this repository's HEAD and a no-op commit on top of it; then, with --before, the four
# `asv continuous` steps the job ran before `mixerbench gate` (same commits, same asv environment).
#
#   bash tools/gate_job_time.sh OUT [--before]
#
# OUT (a new folder) gets job.txt (seconds per step), the asv log with a Unix time per line, the gate's
# summary and, with --before, before.txt and the four steps' logs. Everything else (a clone, a virtualenv,
# asv's environment, HOME for asv's machine file) goes to a temporary folder that is removed at the end.
# pip's cache is the user's, as actions/cache restores it on CI; asv's environment is built from scratch.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: bash tools/gate_job_time.sh OUT [--before]" >&2; exit 2; }
out=$1
before=${2:-}
[ ! -e "$out" ] || { echo "gate_job_time: $out exists" >&2; exit 2; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PIP_CACHE_DIR=${PIP_CACHE_DIR:-$HOME/.cache/pip}
export HOME=$work/home
mkdir -p "$HOME"

git clone -q "$src" "$work/repo"
cd "$work/repo"
git checkout -q -b pr
printf '\nA sentence that changes nothing measured.\n' >> README.md
git -c user.name=gate -c user.email=gate@example.invalid commit -q -am "README: a sentence (no-op)"
git branch -q -f main HEAD~1 && git update-ref refs/remotes/origin/main HEAD~1

now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }
stamp() { python3 -u -c "import sys, time; [print(f'{time.time():.1f}', line, end='', flush=True) for line in sys.stdin]"; }
start=$(now)

python3 -m venv "$work/venv"
# shellcheck disable=SC1091
. "$work/venv/bin/activate"
s=$(now)
python -m pip install -q -e '.[dev]'
asv machine --yes --machine github-actions > /dev/null
echo "install $(since "$s")" | tee "$out/job.txt"

s=$(now)
git rev-parse origin/main HEAD > gate-commits.txt
set +e
asv run --machine github-actions --show-stderr --record-samples --bench "$(mixerbench gate --bench-regex)" \
    HASHFILE:gate-commits.txt 2>&1 | stamp > "$out/asv-run.log"
rc=${PIPESTATUS[0]}
set -e
echo "asv run (exit $rc) $(since "$s")" | tee -a "$out/job.txt"
s=$(now)
set +e
mixerbench gate --machine github-actions --out "$out/gate-summary.md" origin/main HEAD > /dev/null 2>&1
rc=$?
set -e
echo "mixerbench gate (exit $rc) $(since "$s")" | tee -a "$out/job.txt"
echo "total $(since "$start")" | tee -a "$out/job.txt"

[ "$before" = --before ] || exit 0
# The four steps of the job before `mixerbench gate`, each on both commits (asv's environment now exists).
steps=(
    "counts 1.0 ^(flops|scaling|cost|predicted)\.|^curves\.(Resolution|PatchSize)\.track_peak_tensor_bytes"
    "timing 1.5 ^(throughput|memory)\."
    "verdicts 1.5 ^measured\.(Verdicts\.track_(verdict|quadratic_share)|AttentionShare\.)"
    "curves 1.5 ^curves\.|^measured\.(Verdicts\.track_drift|Cost\.)"
)
start=$(now)
for step in "${steps[@]}"; do
    read -r name factor bench <<< "$step"
    s=$(now)
    set +e
    asv continuous --machine github-actions --factor "$factor" --show-stderr --bench "$bench" origin/main HEAD \
        > "$out/before-$name.log" 2>&1
    rc=$?
    set -e
    echo "asv continuous $name (exit $rc) $(since "$s")" | tee -a "$out/before.txt"
done
echo "total of the four steps $(since "$start")" | tee -a "$out/before.txt"
