"""gluon-deeplab: DeepLabV3 (ASPP / Vortex pooling) semantic segmentation in MXNet Gluon."""
import os
import runpy

from setuptools import find_packages, setup

# MXNet's CPU build and its CUDA builds are separate distributions writing the same mxnet/ folder,
# so none is required (as gluoncv does) and one extra pins each: .[cpu], .[cu117] ... .[cu102],
# with the numpy it works with and, for CUDA 11, NVIDIA's wheels of the CUDA libraries it needs.
# In NVIDIA's MXNet container, `pip install -e .` keeps the container's MXNet, numpy and CUDA.
_builds = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                      "gluon_deeplab", "mxnet_builds.py"))
MXNET_EXTRAS = {build: _builds["extra_requirements"](build) for build in _builds["BUILDS"]}

setup(
    name="gluon-deeplab",
    version="0.1.0",
    description="DeepLabV3 with ResNet-v2, ASPP and Vortex pooling in MXNet Gluon",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["gluon_deeplab", "gluon_deeplab.*"]),
    python_requires=">=3.8",
    install_requires=[
        "gluoncv==0.10.5.post0",
        # MXNet 1.9.1 needs numpy < 2; PyPI's builds also < 1.24 (np.bool): in their extras.
        "numpy>=1.21,<2",
        "pillow>=9.0",
        "tqdm>=4.60",
        "scipy>=1.7",
        "matplotlib>=3.5",
    ],
    extras_require={
        **MXNET_EXTRAS,
        # tensorboard: its EventAccumulator reads the event files back in the tests.
        "test": ["pytest>=7", "ruff>=0.5", "tensorboard==2.21.0", "playwright==1.65.3"],
        "crf": ["pydensecrf2==1.1"],
        # Overlay videos (predict.py clip.mp4): PyAV's wheels carry FFmpeg with libx264.
        "video": ["av==18.1.1"],
        # The newest pair that works with numpy < 1.24 and MXNet's opset-13 converter.
        "onnx": ["onnx==1.16.2", "onnxruntime==1.31.1"],
        # dmlc_tracker's Kubernetes submitter (gluon-deeplab-launch --launcher kubernetes).
        "kubernetes": ["kubernetes==37.0.2"],
        # Writes the event files (numpy < 1.24 and onnx's protobuf are fine with it).
        "tensorboard": ["tensorboardX==2.6.5"],
        # gluon-deeplab-serve and its load test (numpy < 1.24 and MXNet 1.9.1 are fine with it).
        "serve": ["fastapi==0.165.0", "starlette==1.10.0", "uvicorn[standard]==0.55.0",
                  "prometheus-client==0.26.0", "httpx==0.29.0", "python-multipart==0.0.34"],
        # The browser demo at /demo and gluon-deeplab-demo (brings pillow < 13 and pandas).
        "demo": ["gradio==6.31.0"],
    },
    entry_points={
        "console_scripts": [
            "gluon-deeplab-train=gluon_deeplab.training.cli:main",
            "gluon-deeplab-eval=gluon_deeplab.evaluation.cli:eval_main",
            "gluon-deeplab-predict=gluon_deeplab.evaluation.predict_cli:main",
            "gluon-deeplab-ensemble=gluon_deeplab.evaluation.ensemble_cli:main",
            "gluon-deeplab-export=gluon_deeplab.deploy.cli:export_command",
            "gluon-deeplab-bench=gluon_deeplab.bench.cli:bench_command",
            "gluon-deeplab-gpu-check=gluon_deeplab.bench.gpu_check_cli:gpu_check_command",
            "gluon-deeplab-download-voc=gluon_deeplab.data.download_cli:main",
            "gluon-deeplab-make-synthetic=gluon_deeplab.data.synthetic_cli:main",
            "gluon-deeplab-env=gluon_deeplab.env:main",
            "gluon-deeplab-launch=gluon_deeplab.training.launch_cli:main",
            "gluon-deeplab-serve=gluon_deeplab.deploy.serve_cli:serve_command",
            "gluon-deeplab-demo=gluon_deeplab.deploy.serve_cli:demo_command",
            "gluon-deeplab-loadtest=gluon_deeplab.deploy.loadtest:loadtest_command",
        ],
    },
)
