# Token by Token for a class: one image, one process, one port.
#   docker build -t token-by-token .
#   docker run -p 8501:8501 -v hf-cache:/cache/huggingface token-by-token
# compose.yaml runs it (alone, or as replicas behind a sticky proxy); deploy/ has Kubernetes.

# Any image with Python 3.11 on PATH and pip will do; CI builds FROM a Debian bookworm made
# with debootstrap (python3, python3-pip, python-is-python3), where registries are out of reach.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

# uv from PyPI, in a folder of its own (--target: also allowed where Debian's pip refuses to
# install into the system Python). uv uses the image's Python and never downloads one.
ARG UV_VERSION=0.13.9
RUN python3 -m pip install --quiet --no-cache-dir --disable-pip-version-check \
        --target /opt/uv "uv==${UV_VERSION}" \
    && ln -s /opt/uv/bin/uv /usr/local/bin/uv
ENV UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy

# The learner-facing process runs as this user (numeric in USER below, so that Kubernetes'
# runAsNonRoot can check it). The code and the virtual environment stay root's: read-only.
RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin app \
    && mkdir -p /cache/huggingface && chown app:app /cache/huggingface

WORKDIR /app
# The dependencies first: this layer (~6 GB, torch) is rebuilt only when the lock changes.
# UV_CACHE_DIR: uv's download cache, kept between builds by BuildKit (the mount below). CI
# points it at the host's own cache instead, which holds every wheel already (tests/serve.py:
# --build-arg UV_CACHE_DIR=/root/.cache/uv --volume "$(uv cache dir):/root/.cache/uv").
ARG UV_CACHE_DIR=/uv-cache
COPY pyproject.toml uv.lock .python-version ./
RUN --mount=type=cache,target=/uv-cache \
    uv sync --locked --no-dev --compile-bytecode --no-install-project
COPY . .
RUN .venv/bin/python -m compileall -q main.py readme.py token_by_token chapter1 chapter2

# The model cache: Qwen3-0.6B (1.5 GB) is downloaded once into this volume, not per start.
ENV HF_HOME=/cache/huggingface
VOLUME ["/cache/huggingface"]

# TOKEN_BY_TOKEN_MODEL: empty means the app's default (Qwen/Qwen3-0.6B); `pocket` is the
# built-in 5 MB model; or a model id, or a directory in a mounted volume. Set it at run time
# (-e TOKEN_BY_TOKEN_MODEL=pocket) or bake one in (--build-arg TOKEN_BY_TOKEN_MODEL=pocket).
ARG TOKEN_BY_TOKEN_MODEL=
ENV TOKEN_BY_TOKEN_MODEL=${TOKEN_BY_TOKEN_MODEL} \
    PATH=/app/.venv/bin:${PATH} \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    STREAMLIT_SERVER_ADDRESS=0.0.0.0 \
    STREAMLIT_SERVER_PORT=8501 \
    STREAMLIT_SERVER_HEADLESS=true \
    STREAMLIT_SERVER_FILE_WATCHER_TYPE=none \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false

USER 10001:10001
EXPOSE 8501
# Streamlit answers "ok" here once its server is up (the model loads on the first page). The
# body is checked, not only the status: Streamlit answers 200 with its page to any path.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; r = u.urlopen('http://127.0.0.1:' + os.environ['STREAMLIT_SERVER_PORT'] + '/_stcore/health', timeout=4); raise SystemExit(r.read() != b'ok')"]
CMD ["streamlit", "run", "main.py"]
