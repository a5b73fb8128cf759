# syntax=docker/dockerfile:1
# One image for every Vigil role; the role is chosen by the command
# (`vigil worker --agents hashing`, `vigil run`, ...).

# ---- builder: build wheels for Vigil and its dependencies, install them into a venv
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A compiler for any dependency without a wheel for this platform; this stage is discarded.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# README.md* : pyproject names README.md as the long description; the glob keeps the build
# working while the file is absent.
COPY pyproject.toml requirements.lock README.md* ./
COPY streams/ streams/
COPY models/ models/
COPY agents/ agents/
COPY vigil/ vigil/
RUN pip wheel --wheel-dir /wheels -c requirements.lock . \
 && pip install --no-index --find-links /wheels vigil
# Model files that are converted at install time (never downloaded, never at run time), into the
# installed package that the final stage copies (models/build.py).
# (From / so that `models` is the installed package, not the source copy in /src.)
RUN cd / && python -m models.build

# ---- final: the venv only, run as an unprivileged user
FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/vigil --create-home vigil \
 && install -d -o vigil -g vigil /var/lib/vigil/banks
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    VIGIL_WEB_HOST=0.0.0.0 \
    VIGIL_WEB_PORT=8080 \
    VIGIL_DATA_DIR=/var/lib/vigil
WORKDIR /var/lib/vigil
USER vigil
EXPOSE 8080
# No curl in slim images: ask /healthz with the standard library (non-2xx raises → exit 1).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('VIGIL_WEB_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["vigil"]
CMD ["--help"]
