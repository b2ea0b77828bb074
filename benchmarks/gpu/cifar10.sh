#!/usr/bin/env bash
# One GPU, at most 10 minutes wall time including start-up (README "224-pixel recipes" /
# "Streaming" neighbours; budget: 15 epochs x 2 methods of ResNet-18 on 45,000 CIFAR-10 images
# under bf16 autocast + channels-last): SoftMax and DisMax trained on the full 50,000-image
# ../shared/data/cifar10_train_jpeg.npz (10 % held out for calibration), scored on the CIFAR-10
# test split against TIN-resize and MNIST; writes benchmarks/results/gpu-cifar10.json with
# images/s per phase. Extra arguments go to benchmarks/gpu/cifar10.py, e.g.
#   bash benchmarks/gpu/cifar10.sh --compile            # torch.compile the model first
#   bash benchmarks/gpu/cifar10.sh --smoke --device cpu # 1 epoch on 128 images, any machine
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 600 python3 benchmarks/gpu/cifar10.py "$@"
