#!/bin/bash
#SBATCH --job-name=sam-peft
#SBATCH --partition=gpu
#SBATCH --gres=gpu:4
#SBATCH --cpus-per-task=16
#SBATCH --mem=64G
#SBATCH --time=04:00:00
#SBATCH --output=sam-peft-%j.log

set -euo pipefail
# module load cuda   # if your cluster needs it
source "$HOME/napari-sam-peft/.venv/bin/activate"
export MICROSAM_CACHEDIR="$HOME/.cache/micro_sam"   # registry weights, downloaded once on a login node
STORE=${1:?usage: sbatch train_slurm.sh STORE [PRESET]}
PRESET=${2:-late_lora}
srun torchrun --standalone --nproc_per_node "$SLURM_GPUS_ON_NODE" -m napari_sam_peft.cli train "$STORE" \
    --model vit_b_lm --preset "$PRESET" --steps 2000 --evaluate \
    --out "${STORE%.sampeft.zarr}.${PRESET}.${SLURM_JOB_ID}.safetensors"
