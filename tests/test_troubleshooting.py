"""README's troubleshooting quotes the messages people will search for: each quote is produced
here by the code that prints it ("..." in a quote stands for the words that vary)."""

from __future__ import annotations

import os
import re

import pytest

from gluon_deeplab import cuda_libs
from gluon_deeplab.data.loader import SharedMemoryError, check_shared_memory
from gluon_deeplab.models import pretrained
from gluon_deeplab.mxnet_builds import kernel_verdict
from gluon_deeplab.training.cli import main as train_main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train_error(capsys, *argv: str) -> str:
    try:
        status = train_main(list(argv))
    except SystemExit as end:  # a bad value: the one line
        status = end.code
    assert status not in (0, None)
    return capsys.readouterr().err.strip().splitlines()[-1]


def _gpus_on_the_cpu_build(capsys, tmp_path) -> str:
    return _train_error(capsys, "--gpus", "0,1", "--output_dir", str(tmp_path / "run"))


def _missing_cuda_library(capsys, tmp_path) -> str:
    error = OSError("libcudnn.so.8: cannot open shared object file: No such file or directory")
    return cuda_libs.missing_line(error, "mxnet-cu117", "cu117")


def _shared_memory(capsys, tmp_path) -> str:
    with pytest.raises(SharedMemoryError) as err:
        check_shared_memory(2 ** 40, 3, 4)  # a batch of 1 TiB: more than any /dev/shm
    return str(err.value)


def _offline_weights(capsys, tmp_path) -> str:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MXNET_HOME", str(tmp_path / "mxnet"))
        patch.setenv("MXNET_GLUON_REPO", "http://127.0.0.1:9/")
        with pytest.raises(pretrained.PretrainedUnavailable) as err:
            pretrained.resolve_pretrained("imagenet", "resnet50_v2", timeout=5)
    return str(err.value)


def _run_folder_taken(capsys, tmp_path) -> str:
    from gluon_deeplab.data import make_synthetic_dataset

    data = make_synthetic_dataset(str(tmp_path / "data"), num_train=2, num_val=1, size=(16, 16))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "final.params").write_bytes(b"")
    return _train_error(capsys, "--dataset", "synthetic", "--data_dir", data,
                        "--output_dir", str(tmp_path / "run"), "--pre_trained_model", "none")


PRODUCERS = {
    "the installed MXNet (mxnet 1.9.1) is built without CUDA": _gpus_on_the_cpu_build,
    "no kernels for sm_90": lambda capsys, tmp_path: kernel_verdict("cu117", (9, 0))[1],
    "import mxnet (mxnet-cu117 1.9.1) fails: ... not found": _missing_cuda_library,
    "/dev/shm has ... MiB free but ... loader workers keep up to ...": _shared_memory,
    "ImageNet weights of resnet50_v2 not available": _offline_weights,
    "... already holds a run": _run_folder_taken,
}


def _quoted() -> list:
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    return re.findall(r'\*\*(?:`[^`]*`: )?"([^"]+)"\*\*', section)


def test_every_quoted_message_has_its_producer_here():
    assert sorted(_quoted()) == sorted(PRODUCERS)


@pytest.mark.parametrize("quote", sorted(PRODUCERS))
def test_the_quoted_message_is_what_the_code_prints(quote, capsys, tmp_path):
    message = PRODUCERS[quote](capsys, tmp_path)
    pattern = ".*?".join(re.escape(part.strip()) for part in quote.split("..."))
    assert re.search(pattern, message), f"README quotes {quote!r}; the code says {message!r}"
