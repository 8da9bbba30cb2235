#!/usr/bin/env bash
# The GPU figures of issue 17 in one command: prints them and writes bench/results/gpu-<UTC date>.json.
#
#   bash bench/gpu.sh            # needs jax with a CUDA backend: pip install -e ".[fl]" "jax[cuda12]"
#
# 1. vmapped clients vs a per-client jit loop (and the per-step loop) per FedAvg round: bench/bench_fedavg.py
# 2. share with ChaCha20 in jax.numpy (jitted, on the GPU) vs the NumPy/OpenSSL path: bench/bench_jax.py
# Both run on JAX's default device; the script refuses to run (exit 2) when that is not a GPU, so a CPU figure is
# never filed as a GPU one. CI never runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
DATE="$(date -u +%F)"
"$PY" - <<'PYEOF' || exit 2
import sys
import jax
platform = jax.devices()[0].platform
if platform != "gpu":
    sys.exit(f"bench/gpu.sh: JAX's default device is {jax.devices()[0]} (platform {platform!r}), not a GPU; "
             "install jax with CUDA (pip install 'jax[cuda12]') on a machine with an NVIDIA GPU")
print(f"# GPU: {jax.devices()}")
PYEOF
"$PY" bench/bench_jax.py --sizes 1000 100000 1000000 10000000 --out "bench/results/jax-$DATE-gpu.json"
"$PY" bench/bench_fedavg.py --rounds 8 --out "bench/results/fedavg-$DATE-gpu.json"
"$PY" - "$DATE" <<'PYEOF'
import json, sys
sys.path.insert(0, "bench")
import _common
date = sys.argv[1]
jax_run = json.loads(open(f"bench/results/jax-{date}-gpu.json").read())
fed_run = json.loads(open(f"bench/results/fedavg-{date}-gpu.json").read())
figures = {
    "share_chacha20_jax_time_over_numpy_time": {f"{r['op']} d={r['size']}": r["jax_over_numpy"] for r in jax_run["results"]
                                      if r["op"].startswith("share")},
    "fedavg_vmap_speedup_over": {m: s["speedup_of_vmap_over"] for m, s in fed_run["models"].items()},
}
result = {"benchmark": "gpu", "machine": fed_run["machine"], "figures": figures,
          "sources": [f"bench/results/jax-{date}-gpu.json", f"bench/results/fedavg-{date}-gpu.json"]}
print(json.dumps(figures, indent=1))
_common.write_result(result, None, "gpu")
PYEOF
