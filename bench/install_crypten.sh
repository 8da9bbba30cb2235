#!/usr/bin/env bash
# Install CrypTen 0.4.1 for bench/bench_training.py into its own virtual environment (default: ~/.venv-crypten).
# `pip install crypten` fails on its deprecated `sklearn` requirement and newer torch breaks its ONNX import, so:
# torch 2.8.0 first, then CrypTen's dependencies with scikit-learn, then crypten itself without dependencies.
# Takes about 4-5 minutes and ~7 GB (PyPI's torch wheel pulls the CUDA libraries; CrypTen runs on the CPU).
# Then: python bench/bench_training.py --crypten-python ~/.venv-crypten/bin/python
set -euo pipefail
VENV="${1:-$HOME/.venv-crypten}"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q "torch==2.8.0"
"$VENV/bin/pip" install -q scikit-learn onnx pandas pyyaml omegaconf
"$VENV/bin/pip" install -q --no-deps "crypten==0.4.1"
"$VENV/bin/python" -c "import crypten, torch; print('crypten', crypten.__version__, 'torch', torch.__version__)"
