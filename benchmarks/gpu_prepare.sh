#!/usr/bin/env bash
# What benchmarks/gpu_gan_mnist.sh needs on a GPU host without network or TensorFlow, gathered into the
# git-ignored .whl/ (Keras, pydantic and their dependencies) and .gpudata/ (MNIST's published files and
# the reference classifier run's model, recipe and manifest). Then: run with carry [".whl", ".gpudata"].
#   benchmarks/gpu_prepare.sh runs/cnn_mnist/<run>
set -euo pipefail
ref=${1:?usage: benchmarks/gpu_prepare.sh REFERENCE_CLASSIFIER_RUN}
data=${DLKIT_DATA_DIR:-../shared/data}
cd "$(git rev-parse --show-toplevel)"
[ -d .whl ] || ../shared/gpu/fetch-wheels.sh grain array-record etils cloudpickle portpicker protobuf fsspec importlib-resources zipp psutil filelock  # Grain: the feed without TensorFlow; filelock: the compilation cache's lock
mkdir -p .gpudata/mnist .gpudata/ref
cp "$data"/mnist/*-ubyte.gz .gpudata/mnist/
cp "$ref"/{model.keras,recipe.yaml,manifest.json,metrics.json} .gpudata/ref/
du -sh .whl .gpudata
