# gluon-deeplab on GPUs from Volta to Ada (compute capability 7.0 to 8.9: V100, T4, A100, A10,
# L4, RTX 30xx/40xx): mxnet-cu117 and its CUDA 11 libraries, all from pip; the host gives only
# the driver (one for CUDA 11.7 or newer: R515+), through `docker run --gpus all`.
# Not for Hopper or newer (no kernels for sm_90): docker/ngc.Dockerfile. Not built by the tests
# (no Docker or GPU where they run): tests/test_docker.py checks each RUN line is the README's.
#   docker build -f docker/cuda11.Dockerfile -t gluon-deeplab:cu117 .
FROM python:3.11-slim
# What the NVIDIA container toolkit reads to mount the driver (libcuda.so.1, nvidia-smi).
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 libgomp1
WORKDIR /workspace/gluon-deeplab
COPY . .
RUN pip install -e '.[cu117]'
CMD ["gluon-deeplab-env"]
