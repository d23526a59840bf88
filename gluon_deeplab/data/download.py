"""Download PASCAL VOC 2012 and SBD into gluoncv's layout: ``ROOT/VOC2012`` and
``ROOT/VOCaug/dataset`` (ROOT = ``$MXNET_HOME/datasets/voc``), as gluoncv's ``pascal_voc.py``.

Archives are fetched with gluoncv's ``download`` (progress bar, SHA-1 check) into
``ROOT/downloads`` under a temporary name and kept there once their checksum is right (a rerun
does not download them again). They are unpacked into a temporary folder inside ROOT and moved
into place. A wrong checksum, a broken archive or a failed download leaves ROOT as it was; an
existing non-empty ``VOC2012`` or ``VOCaug`` is never replaced.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import tarfile
import tempfile
import uuid
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence

from tqdm import tqdm

from ..download_timeout import DEFAULT_TIMEOUT_S, requests_timeout, unresolved_host
from ..errors import error_line
from .voc import gluoncv_voc_root

# The URL folder holding every archive (a mirror), instead of each archive's own site.
MIRROR_ENV = "GLUON_DEEPLAB_VOC_MIRROR"
DOWNLOADS = "downloads"


@dataclass(frozen=True)
class Archive:
    """One archive: where it is, its SHA-1, the folder inside it and where that goes in ROOT."""

    name: str
    file_name: str
    base_url: str
    sha1: str
    member: str
    target: str


VOC_ARCHIVES = (
    Archive("voc2012", "VOCtrainval_11-May-2012.tar",
            "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/",
            "4e443f8a2eca6b1dac8a6c57641b67dd40621a49", "VOCdevkit/VOC2012", "VOC2012"),
    Archive("sbd", "benchmark.tgz",
            "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/",
            "7129e0a480c2d6afb02b517bb18ac54283bfaa35", "benchmark_RELEASE", "VOCaug"),
)


class DownloadError(RuntimeError):
    """A download or an archive that cannot be used (one line: what, where, what to do)."""


def sha1_of(path: str) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _non_empty_dir(path: str) -> bool:
    return os.path.isdir(path) and bool(os.listdir(path))


def fetch_archive(archive: Archive, folder: str, mirror: Optional[str] = None,
                  timeout: float = DEFAULT_TIMEOUT_S, say: Callable[[str], None] = print) -> str:
    """``folder/<file_name>`` with the right SHA-1: reused when there, else downloaded."""
    gluoncv_download = importlib.import_module("gluoncv.utils.download")
    path = os.path.join(folder, archive.file_name)
    if os.path.isfile(path):
        if sha1_of(path) == archive.sha1:
            say(f"{path}: present, SHA-1 checked")
            return path
        say(f"{path}: SHA-1 differs from {archive.sha1}; downloading it again")
    url = (mirror or archive.base_url).rstrip("/") + "/" + archive.file_name
    os.makedirs(folder, exist_ok=True)
    part = f"{path}.part-{uuid.uuid4().hex}"
    try:
        host = unresolved_host(url)
        if host:
            raise OSError(f"host {host} does not resolve: offline?")
        with requests_timeout(gluoncv_download, seconds=timeout):
            gluoncv_download.download(url, path=part, sha1_hash=archive.sha1)
        os.replace(part, path)
    except UserWarning:  # gluoncv's way to say "hash mismatch"
        got = sha1_of(part)
        raise DownloadError(f"{url}: SHA-1 {got} is not the expected {archive.sha1} (incomplete "
                            "download or a wrong mirror); nothing was kept or changed") from None
    except Exception as err:
        raise DownloadError(f"{url}: download failed ({error_line(err, with_type=True)}); "
                            f"nothing was changed; set --mirror / {MIRROR_ENV} or put "
                            f"{archive.file_name} into {folder}") from None
    finally:
        if os.path.exists(part):
            os.remove(part)
    return path


def _unpack(archive_path: str, archive: Archive, root: str, target: str) -> None:
    """Extract into a temporary folder in ``root``, then move ``archive.member`` to ``target``."""
    scratch = tempfile.mkdtemp(prefix=".unpack-", dir=root)
    try:
        try:
            with tarfile.open(archive_path) as tar:
                for member in tqdm(tar.getmembers(), desc=f"unpacking {archive.file_name}",
                                   unit="file", dynamic_ncols=True):
                    tar.extract(member, scratch, filter="data")
        except (tarfile.TarError, OSError, EOFError) as err:
            raise DownloadError(f"{archive_path}: cannot be unpacked ({err}); delete it and "
                                "run again") from None
        source = os.path.join(scratch, archive.member)
        if not os.path.isdir(source):
            raise DownloadError(f"{archive_path}: holds no {archive.member}/ folder (not the "
                                f"{archive.name} archive)")
        if os.path.isdir(target):
            os.rmdir(target)  # empty: checked by the caller
        os.replace(source, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _write_sbd_trainval(target: str) -> None:
    """gluoncv also writes VOCaug/dataset/trainval.txt = train.txt + val.txt."""
    base = os.path.join(target, "dataset")
    lists = [os.path.join(base, f"{s}.txt") for s in ("train", "val")]
    out = os.path.join(base, "trainval.txt")
    if all(os.path.isfile(p) for p in lists) and not os.path.exists(out):
        with open(out, "w", encoding="utf-8") as f:
            for p in lists:
                with open(p, encoding="utf-8") as lines:
                    f.write("".join(line if line.endswith("\n") else line + "\n"
                                    for line in lines))


def download_voc(root: Optional[str] = None, mirror: Optional[str] = None,
                 archives: Sequence[Archive] = VOC_ARCHIVES,
                 timeout: float = DEFAULT_TIMEOUT_S,
                 say: Callable[[str], None] = print) -> Dict[str, str]:
    """Fetch and unpack VOC 2012 and SBD into ``root`` (default gluoncv's VOC root).

    ``mirror`` (or $GLUON_DEEPLAB_VOC_MIRROR) is a URL folder holding the archives under their
    own names. Returns {archive name: its folder in root}. A non-empty target folder is kept
    and its archive not fetched.
    """
    root = os.path.abspath(os.path.expanduser(root or gluoncv_voc_root()))
    mirror = mirror or os.environ.get(MIRROR_ENV) or None
    os.makedirs(root, exist_ok=True)
    done: Dict[str, str] = {}
    for archive in archives:
        target = os.path.join(root, archive.target)
        if _non_empty_dir(target):
            say(f"{target}: exists and is not empty, kept ({archive.name} not downloaded)")
        else:
            path = fetch_archive(archive, os.path.join(root, DOWNLOADS), mirror, timeout, say)
            _unpack(path, archive, root, target)
            say(f"{archive.name}: unpacked into {target}")
        if archive.name == "sbd":
            _write_sbd_trainval(target)
        done[archive.name] = target
    return done


