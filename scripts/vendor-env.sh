#!/usr/bin/env bash
# Builds the vendor DeepSeek-OCR environment: torch (CPU wheel, pinned) + transformers 4.46.3,
# tokenizers 0.20.3 and what the vendor remote code imports, then this project on top.
# Usage: VENV=.venv-vendor bash scripts/vendor-env.sh
set -euo pipefail
VENV=${VENV:-.venv-vendor}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
cd "$(dirname "$0")/.."
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip
"$PY" -c "import torch" 2>/dev/null || "$PY" -m pip install -q "torch==$TORCH_VERSION" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
"$PY" -m pip install -q -e ".[vendor,counters,test]"
"$PY" - <<'PY'
import transformers, tokenizers
assert transformers.__version__ == "4.46.3", transformers.__version__
print(f"vendor environment ready: transformers {transformers.__version__}, tokenizers {tokenizers.__version__}")
PY
