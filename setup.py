"""gluon-deeplab: DeepLabV3 (ASPP / Vortex pooling) semantic segmentation in MXNet Gluon."""
from setuptools import find_packages, setup

setup(
    name="gluon-deeplab",
    version="0.1.0",
    description="DeepLabV3 with ResNet-v2, ASPP and Vortex pooling in MXNet Gluon",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["gluon_deeplab", "gluon_deeplab.*"]),
    python_requires=">=3.8",
    install_requires=[
        "mxnet==1.9.1",
        "gluoncv==0.10.5.post0",
        # mxnet 1.9.1 uses np.bool, removed in numpy 1.24.
        "numpy>=1.21,<1.24",
        "pillow>=9.0",
        "tqdm>=4.60",
        "scipy>=1.7",
        "matplotlib>=3.5",
    ],
    extras_require={
        "test": ["pytest>=7", "ruff>=0.5"],
        "crf": ["pydensecrf2==1.1"],
        # The newest pair that works with numpy < 1.24 and MXNet's opset-13 converter.
        "onnx": ["onnx==1.16.2", "onnxruntime==1.31.1"],
    },
    entry_points={
        "console_scripts": [
            "gluon-deeplab-train=gluon_deeplab.training.cli:main",
            "gluon-deeplab-eval=gluon_deeplab.evaluation.cli:eval_main",
            "gluon-deeplab-predict=gluon_deeplab.evaluation.predict:main",
            "gluon-deeplab-ensemble=gluon_deeplab.evaluation.ensemble:main",
        ],
    },
)
