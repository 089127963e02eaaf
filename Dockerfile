# CPU image of the screener. (A CUDA variant: start FROM an nvidia/cuda runtime image with
# Python 3.11 and install torch from the matching CUDA index instead of the CPU wheel.)
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends dcm2niix dcmtk mricron-data \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/screener
COPY pyproject.toml README.md ./
COPY screener ./screener
COPY configs ./configs
COPY weights ./weights
COPY examples ./examples
# TORCH_INDEX: the CPU wheel index of PyTorch (pass with --build-arg); torch stays pinned.
ARG TORCH_INDEX=""
RUN pip install --no-cache-dir torch==2.13.0 ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} \
    && pip install --no-cache-dir -e '.[pacs,scale]'
RUN useradd --system screener
USER screener
ENTRYPOINT ["screener"]
CMD ["--help"]
