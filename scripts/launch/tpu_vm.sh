#!/usr/bin/env bash
# One `align` command on every host of a Cloud TPU VM slice (docs/multihost.md).
#
#   scripts/launch/tpu_vm.sh TPU_NAME ZONE sft --config configs/sft/gemma3_270m.yaml
#   DRY_RUN=1 scripts/launch/tpu_vm.sh ...     # print the gcloud command instead of running it
#
# Every worker runs the same command at once (--worker=all); ALIGN_DISTRIBUTED=1 makes `align` call
# jax.distributed.initialize(), which finds its peers from the TPU metadata. The checkout and its .venv
# must exist on every worker at ALIGN_REMOTE_DIR (default ~/align), and output_dir must be a directory
# all workers share (a gs:// bucket through gcsfuse, or Filestore): Orbax writes checkpoints from all
# of them, process 0 writes the run files.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 TPU_NAME ZONE ALIGN_COMMAND [ARGS...]" >&2
  exit 2
fi
name=$1 zone=$2
shift 2
remote_dir=${ALIGN_REMOTE_DIR:-'~/align'}
align_args=$(printf '%q ' "$@")
remote="cd $remote_dir && ALIGN_DISTRIBUTED=1 .venv/bin/align ${align_args% }"
cmd=(gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=all --command "$remote")
if [ -n "${DRY_RUN:-}" ]; then
  printf '%q ' "${cmd[@]}"
  echo
else
  "${cmd[@]}"
fi
