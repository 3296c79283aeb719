# syntax=docker/dockerfile:1
# abgate gateway image: `docker run -v ./router.yaml:/config/router.yaml -v abgate-data:/data -p 8000:8000 abgate`
# Stage 1 builds a venv with every dependency (wheels only, no compilers in the final image).
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first so code edits do not reinstall them.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt
COPY abgate ./abgate
COPY gateway ./gateway
COPY evaluation ./evaluation
COPY training ./training
COPY simulator ./simulator
RUN pip install --no-deps . && python -c "import abgate, gateway, simulator"

# Stage 2: slim runtime, non-root, config and state as volumes.
FROM python:3.11-slim
RUN groupadd --system --gid 10001 abgate \
 && useradd --system --uid 10001 --gid abgate --home-dir /data --shell /usr/sbin/nologin abgate \
 && mkdir -p /config /data \
 && chown abgate:abgate /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ABGATE_HOME=/data
USER abgate
WORKDIR /data
# /config: router config (read-only is fine; the store keeps versions under /data).
# /data: state dir (config versions, event archive, registry, secrets, spool).
VOLUME ["/config", "/data"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["abgate", "serve"]
CMD ["--config", "/config/router.yaml", "--host", "0.0.0.0", "--port", "8000", "--state-dir", "/data"]
