# gluon-deeplab on Hopper and newer (H100, H200: compute capability 9.0+), and any GPU from
# Pascal on: NVIDIA's MXNet container (MXNet 1.9.1 built by NVIDIA, CUDA 12.4.1, cuDNN 9,
# NCCL 2.21, Python 3.10). `pip install -e .` keeps its MXNet, numpy and CUDA: no extra.
# Not built by the tests (no Docker or GPU where they run): tests/test_docker.py checks each
# RUN line is the README's, tests/test_container_route.py what pip resolves there.
#   docker build -f docker/ngc.Dockerfile -t gluon-deeplab:ngc .
FROM nvcr.io/nvidia/mxnet:24.06-py3
WORKDIR /workspace/gluon-deeplab
COPY . .
RUN pip install -e .
CMD ["gluon-deeplab-env"]
