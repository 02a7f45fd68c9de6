#!/usr/bin/env bash
# Inference benchmark: medscreen against ONNX Runtime (npm onnxruntime-node, CPU) and Debian's
# PyTorch on the two reference networks, side by side in one run.
#
#   (a) screener 1x1x512x512: 3x3 convs 16, 32/s2, 32, 64/s2, 64, 128/s2, 128 (pad 1, bias,
#       ReLU), 1x1 head 128->1; 5.51 GFLOP/image
#   (b) torchvision ResNet-18 at 1x3x224x224 (batch norms with random statistics); 3.63 GFLOP
#
# Steps: install what is missing (python3-torch, python3-torchvision, python3-onnx with apt as
# root; onnxruntime-node with npm into build-bench/ort, --ignore-scripts), build Release in
# build-bench, export both networks to ONNX with seeded random weights
# (scripts/export-bench-models.py), convert them with `medscreen convert`, check that
# medscreen's output equals ONNX Runtime's and PyTorch's on one batch-2 input (max|a-b|/max|b|
# <= 1e-4; a failure stops the run before any timing), measure the FMA peak, then for each net
# x batch {1,8} x threads {1,2} run bench_net, scripts/bench-ort.js and scripts/bench-torch.py
# in ROUNDS interleaved rounds (the order rotates each round), each process doing RUNS timed
# runs after a warm-up. With 2 threads medscreen runs in both of its modes: the session's own
# worker threads with OpenBLAS on one thread ("pool", the engine's mode) and one session
# thread with OpenBLAS threads ("blas"). The table gives, per configuration, the median over
# rounds of each runtime's median ms per image, images/s, and medscreen's throughput (its
# faster mode) over ONNX Runtime's (target >= 1.0x, >= 1.2x on the screener: PASS/MISS) and
# over PyTorch's. Then per-layer tables (bench_net --layers, batch 1: 1 thread, 1 thread
# without fast paths (--direct, to show what Winograd gives), 2 pool threads, 2 BLAS threads)
# and a memory soak of the screener (bench_net --soak N, batch 1, 1 thread).
#
# Usage: scripts/bench-inference.sh [--quick] [--rounds N] [--runs N] [--soak N | --no-soak]
#   --quick     2 rounds of 10 runs and a soak of 500 (a smoke run; figures are rougher)
#   defaults    3 rounds of 20 runs, soak 10000 (about 10 minutes on its own)
# Everything printed is also written to build-bench/bench-inference.txt, and the raw JSON
# lines to build-bench/bench-inference.jsonl. Exit status: 0 done (targets missed or met),
# 1 a step failed or the outputs disagree, 2 usage error.
# Timings on a shared machine are noisy: the rounds are interleaved so that load from other
# processes hits every runtime alike, and medians are reported; compare only runs made on the
# same machine.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build-bench"
models="$build/models"
ort_prefix="$build/ort"
py=/usr/bin/python3
rounds=3
runs=20
soak=10000

usage() {
    echo "usage: scripts/bench-inference.sh [--quick] [--rounds N] [--runs N]" \
        "[--soak N | --no-soak]" >&2
    exit 2
}
# An option's value: there is one ($1 = arguments left >= 2) and it is an integer >= 1.
opt_uint() { (($1 >= 2)) && [[ $2 =~ ^[0-9]+$ ]] && (($2 >= 1)); }
while (($#)); do
    case $1 in
    --quick) rounds=2 runs=10 soak=500 ;;
    --rounds) opt_uint $# "${2-}" || usage; rounds=$2; shift ;;
    --runs) opt_uint $# "${2-}" || usage; runs=$2; shift ;;
    --soak) opt_uint $# "${2-}" || usage; soak=$2; shift ;;
    --no-soak) soak=0 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *) usage ;;
    esac
    shift
done

mkdir -p "$build"
log="$build/bench-inference.txt"
jsonl="$build/bench-inference.jsonl"
: >"$jsonl"
exec > >(tee "$log") 2>&1

say() { printf '\n== %s\n' "$*"; }
die() {
    echo "bench-inference: $*" >&2
    exit 1
}

# ---- (a) dependencies ----
say "dependencies"
if ! "$py" -c 'import torch, torchvision, onnx' 2>/dev/null; then
    if [[ $(id -u) -eq 0 ]]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch python3-torchvision \
            python3-onnx python3-numpy
    else
        die "python3-torch, python3-torchvision and python3-onnx are missing: run as root or" \
            "'sudo apt-get install python3-torch python3-torchvision python3-onnx'"
    fi
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    die "node and npm are needed for ONNX Runtime (Debian: apt-get install nodejs npm)"
fi
if [[ ! -f $ort_prefix/node_modules/onnxruntime-node/package.json ]]; then
    # --ignore-scripts: the post-install script downloads GPU providers, which are unreachable
    # here and not needed; the CPU library is part of the npm package itself.
    mkdir -p "$ort_prefix"
    npm install --ignore-scripts --no-audit --no-fund --prefix "$ort_prefix" onnxruntime-node
fi
shopt -s nullglob
ort_libs=("$ort_prefix"/node_modules/onnxruntime-node/bin/napi-v*/linux/x64/libonnxruntime.so*)
shopt -u nullglob
((${#ort_libs[@]})) ||
    die "onnxruntime-node has no linux/x64 CPU library under" \
        "$ort_prefix/node_modules/onnxruntime-node/bin"
ort_version=$(cd "$ort_prefix" &&
    node -e 'process.stdout.write(require("onnxruntime-node").env.versions.node)') ||
    die "onnxruntime-node does not load (${ort_libs[0]})"
torch_version=$("$py" -c 'import torch; print(torch.__version__)')
echo "node $(node --version), onnxruntime-node $ort_version (${ort_libs[0]#"$root"/})," \
    "torch $torch_version (Debian)"

# ---- (b) build ----
say "build (Release, $build)"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target medscreen_cli bench_net fma_peak -j"$(nproc)" >/dev/null
ms="$build/medscreen"
bench_net="$build/tests/bench/bench_net"
fma_peak="$build/tests/bench/fma_peak"

# ---- (c, d) export and convert ----
say "export (seeded random weights, opset 13) and convert"
"$py" "$root/scripts/export-bench-models.py" "$models"
nets=(screener resnet18)
for n in "${nets[@]}"; do
    "$ms" convert "$models/$n.onnx" -o "$models/$n.msm"
done

# ---- (e) the three runtimes must agree before anything is timed ----
say "accuracy: medscreen vs ONNX Runtime vs PyTorch on one batch-2 input (max|a-b|/max|b| <= 1e-4)"
for n in "${nets[@]}"; do
    "$ms" model run "$models/$n.msm" --input "$models/$n.input.npy" --output "$models/$n.ms.npy"
    node "$root/scripts/bench-ort.js" "$models/$n.onnx" --check "$models/$n.input.npy" \
        "$models/$n.ort.npy"
    "$py" "$root/scripts/bench-torch.py" "$n" --models "$models" --check "$models/$n.input.npy" \
        "$models/$n.torch.npy"
done
"$py" - "$models" "${nets[@]}" <<'EOF' || die "outputs disagree: no timing"
import sys
import numpy as np
d, names = sys.argv[1], sys.argv[2:]
ok = True
for n in names:
    a, o, t = (np.load(f"{d}/{n}.{k}.npy").astype(np.float64) for k in ("ms", "ort", "torch"))
    a, o, t = (x.reshape(x.shape[0], -1) for x in (a, o, t))
    for label, x, y in (("medscreen vs ORT", a, o), ("medscreen vs PyTorch", a, t),
                        ("ORT vs PyTorch", o, t)):
        if x.shape != y.shape:
            print(f"  {n:9s} {label:21s} shape {x.shape} vs {y.shape}  FAIL")
            ok = False
            continue
        r = float(np.abs(x - y).max() / max(np.abs(y).max(), 1e-30))
        good = r <= 1e-4
        ok &= good or label == "ORT vs PyTorch"
        print(f"  {n:9s} {label:21s} {r:.2e}  {'ok' if good else 'FAIL'}")
sys.exit(0 if ok else 1)
EOF

# ---- (f) peak, then the interleaved rounds ----
say "machine"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores;" \
    "load average $(cut -d' ' -f1-3 /proc/loadavg) (other processes share these cores)"
echo "git: $(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)"
peak_json=$("$fma_peak" --json)
echo "$peak_json" >>"$jsonl"
"$py" - "$peak_json" <<'EOF'
import json, sys
d = json.loads(sys.argv[1])
print("single-core FMA peak (fma_peak, %d chains, best of %d runs): AVX2+FMA %.1f GFLOP/s, "
      "AVX-512 %.1f GFLOP/s (medians %.1f, %.1f); 100%% below = %.1f per core"
      % (d["chains"], d["reps"], d["avx2_fma_gflops"], d["avx512_gflops"],
         d["avx2_fma_median_gflops"], d["avx512_median_gflops"], d["best_gflops"]))
EOF
peak=$("$py" -c 'import json,sys; print(round(json.loads(sys.argv[1])["best_gflops"]))' \
    "$peak_json")

say "timing: $rounds interleaved rounds x $runs runs per runtime and configuration"
# medscreen runs in two modes: "ms" the session's own threads with OpenBLAS on one thread (the
# engine's mode), "msb" one session thread and OpenBLAS threads (only where threads > 1).
# Each takes NET BATCH THREADS WARMUP and prints one JSON line.
run_ms() {
    "$bench_net" "$models/$1.msm" --batch "$2" --threads "$3" --runs "$runs" --warmup "$4" --json
}
run_msb() {
    "$bench_net" "$models/$1.msm" --batch "$2" --blas-threads "$3" --runs "$runs" --warmup "$4" \
        --json
}
run_ort() {
    node "$root/scripts/bench-ort.js" "$models/$1.onnx" --batch "$2" --threads "$3" \
        --runs "$runs" --warmup "$4"
}
run_torch() {
    "$py" "$root/scripts/bench-torch.py" "$1" --models "$models" --batch "$2" --threads "$3" \
        --runs "$runs" --warmup "$4"
}
# Adds runtime, net and round to the JSON line on stdin.
tag() {
    "$py" -c 'import json,sys
d = json.loads(sys.stdin.read())
d.update(runtime=sys.argv[1], net=sys.argv[2], round=int(sys.argv[3]))
print(json.dumps(d, sort_keys=True))' "$@"
}
for n in "${nets[@]}"; do
    for b in 1 8; do
        warm=3
        ((b > 1)) && warm=2
        for t in 1 2; do
            order=(ms ort torch)
            ((t > 1)) && order=(ms msb ort torch)
            printf '%-9s batch %d threads %d:' "$n" "$b" "$t"
            for ((r = 0; r < rounds; r++)); do
                for ((k = 0; k < ${#order[@]}; k++)); do
                    rt=${order[(r + k) % ${#order[@]}]}
                    out=$("run_$rt" "$n" "$b" "$t" "$warm") || die "$rt failed on $n batch $b threads $t"
                    echo "$out" | tag "$rt" "$n" "$r" >>"$jsonl"
                    printf ' %s %.1f' "$rt" "$("$py" -c 'import json,sys; print(json.loads(sys.stdin.read())["ms_per_image"])' <<<"$out")"
                done
                printf ' |'
            done
            echo " load $(cut -d' ' -f1 /proc/loadavg)"
        done
    done
done

# ---- (g) the table ----
say "results (ms/image: median over rounds of each process's median; ratio = medscreen images/s over the other's)"
"$py" - "$jsonl" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
peak = [r for r in rows if r.get("bench") == "fma_peak"][-1]
rows = [r for r in rows if "runtime" in r]
cfgs = sorted({(r["net"], r["batch"], r["threads"]) for r in rows},
              key=lambda c: (c[0] != "screener", c[1], c[2]))


def vals(cfg, rt):
    return [r["ms_per_image"] for r in rows
            if (r["net"], r["batch"], r["threads"], r["runtime"]) == cfg + (rt,)]


print("medscreen 'pool' = the session's threads, OpenBLAS on 1 thread (the engine's mode);")
print("'blas' = 1 session thread, OpenBLAS threads; ratios use the faster of the two.")
hdr = ("net", "batch", "thr", "ms pool", "ms blas", "ORT", "PyTorch", "ms img/s", "ORT img/s",
       "PT img/s", "vs ORT", "target", "vs PT", "GFLOP/s", "%peak")
fmt = "%-9s %5s %3s %8s %8s %8s %8s %9s %9s %9s %7s %12s %6s %8s %6s"
print(fmt % hdr)
misses = 0
for cfg in cfgs:
    net, b, t = cfg
    m = statistics.median(vals(cfg, "ms"))
    mb = statistics.median(vals(cfg, "msb")) if vals(cfg, "msb") else None
    best = min(m, mb) if mb is not None else m
    o, p = statistics.median(vals(cfg, "ort")), statistics.median(vals(cfg, "torch"))
    gf = [r for r in rows if r["runtime"] == "ms" and r["net"] == net][0]["gflop_per_image"]
    need = 1.2 if net == "screener" else 1.0
    ratio = o / best
    ok = ratio >= need
    misses += not ok
    print(fmt % (net, b, t, "%.2f" % m, "-" if mb is None else "%.2f" % mb, "%.2f" % o,
                 "%.2f" % p, "%.2f" % (1e3 / best), "%.2f" % (1e3 / o), "%.2f" % (1e3 / p),
                 "%.2fx" % ratio, ">=%.1fx %s" % (need, "PASS" if ok else "MISS"),
                 "%.2fx" % (p / best), "%.1f" % (gf / (best / 1e3)),
                 "%.1f" % (100 * gf / (best / 1e3) / (peak["best_gflops"] * t))))
print("spread of the round medians, ms/image (min-max):")
for cfg in cfgs:
    parts = []
    for rt, label in (("ms", "pool"), ("msb", "blas"), ("ort", "ORT"), ("torch", "PyTorch")):
        v = vals(cfg, rt)
        if v:
            parts.append("%s %.2f-%.2f" % (label, min(v), max(v)))
    print("  %-9s b%d t%d: %s" % (cfg[0], cfg[1], cfg[2], ", ".join(parts)))
print("fastest round of each runtime (other processes only ever slow a run down, so on a")
print("loaded machine these ratios are the steadier ones; the targets above use the medians):")
for cfg in cfgs:
    best = min(vals(cfg, "ms") + vals(cfg, "msb"))
    o, p = min(vals(cfg, "ort")), min(vals(cfg, "torch"))
    print("  %-9s b%d t%d: medscreen %.2f, ORT %.2f, PyTorch %.2f ms/image; vs ORT %.2fx, "
          "vs PyTorch %.2fx" % (cfg[0], cfg[1], cfg[2], best, o, p, o / best, p / best))
ms0 = [r for r in rows if r["runtime"] == "ms"][0]
print("targets: %d of %d configurations missed" % (misses, len(cfgs)))
print("medscreen: OpenBLAS core %s (%s); ORT %s; PyTorch %s; FMA peak %.1f GFLOP/s per core "
      "(AVX2 %.1f, AVX-512 %.1f)" % (ms0["openblas_core"], ms0["openblas"],
      [r for r in rows if r["runtime"] == "ort"][0]["ort_version"],
      [r for r in rows if r["runtime"] == "torch"][0]["torch"], peak["best_gflops"],
      peak["avx2_fma_gflops"], peak["avx512_gflops"]))
EOF

say "per layer: bench_net --layers, batch 1 ($runs runs; % of the measured peak $peak GFLOP/s per core x threads)"
for n in "${nets[@]}"; do
    for mode in "--threads 1" "--threads 1 --direct" "--threads 2" "--blas-threads 2"; do
        echo
        # shellcheck disable=SC2086 # several words on purpose
        "$bench_net" "$models/$n.msm" --batch 1 $mode --runs "$runs" --layers --peak "$peak"
    done
done

if ((soak > 0)); then
    act=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["act_bytes_two_largest"])' "$models/screener.json")
    say "soak: screener, batch 1, 1 thread, $soak consecutive inferences"
    echo "two largest live activations (conv1 output 16x512x512 + conv2 output 32x256x256, from the layer shapes): $act bytes"
    "$bench_net" "$models/screener.msm" --batch 1 --threads 1 --warmup 0 --soak "$soak" --act-bytes "$act"
fi
echo
echo "written to $log (raw JSON lines: $jsonl)"
