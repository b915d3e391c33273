#!/usr/bin/env bash
# One `align` command as an xpk workload on a GKE cluster of TPU slices (docs/multihost.md).
#
#   scripts/launch/xpk.sh CLUSTER TPU_TYPE NUM_SLICES IMAGE sft --config configs/sft/gemma3_270m.yaml
#   DRY_RUN=1 scripts/launch/xpk.sh ...        # print the xpk command instead of running it
#
# xpk starts one pod per TPU host (a JobSet); ALIGN_DISTRIBUTED=1 makes `align` call
# jax.distributed.initialize(), which finds its peers from the environment GKE gives TPU pods.
# IMAGE holds the checkout installed with `pip install -e '.[tpu]'`; output_dir must be shared (gs://).
# ALIGN_WORKLOAD names the workload (default align-<user>-<time>).
set -euo pipefail
if [ $# -lt 5 ]; then
  echo "usage: $0 CLUSTER TPU_TYPE NUM_SLICES IMAGE ALIGN_COMMAND [ARGS...]" >&2
  exit 2
fi
cluster=$1 tpu_type=$2 slices=$3 image=$4
shift 4
workload=${ALIGN_WORKLOAD:-align-${USER:-run}-$(date +%m%d%H%M)}
align_args=$(printf '%q ' "$@")
cmd=(xpk workload create --cluster "$cluster" --workload "$workload" --tpu-type "$tpu_type"
  --num-slices "$slices" --docker-image "$image" --command "ALIGN_DISTRIBUTED=1 align ${align_args% }")
if [ -n "${DRY_RUN:-}" ]; then
  printf '%q ' "${cmd[@]}"
  echo
else
  "${cmd[@]}"
fi
