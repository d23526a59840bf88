"""The cluster launchers, through dmlc_tracker's own submitters: fake ``ssh`` / ``mpirun`` /
``srun`` / ``qsub`` / YARN client that run what they are given on this machine (and record it),
so that a tiny training runs to its end; Kubernetes against a fake API server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from dist_helpers import check_finished_in_lockstep, launch_env, outcome, run_launch, train_flags

from gluon_deeplab.data import make_synthetic_dataset
from gluon_deeplab.training.launch_cli import main as launch_main

PRELUDE = f"""#!{sys.executable}
import json, os, subprocess, sys
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps({{"program": os.path.basename(sys.argv[0]), "argv": sys.argv[1:],
                        "env": {{k: v for k, v in os.environ.items()
                                if k.startswith(("DMLC_", "SLURM_"))}}}}) + "\\n")
def run_copies(command, envs):  # every copy at once, like the real thing
    procs = [subprocess.Popen(command, env={{**os.environ, **e}}) for e in envs]
    sys.exit(max(abs(p.wait()) for p in procs))
args = sys.argv[1:]
"""
FAKES = {
    "ssh": """i, host = 0, None
while i < len(args):
    if args[i] in ("-o", "-p"):
        i += 2
    elif host is None:
        host, i = args[i], i + 1
    else:
        break
os.execvp("bash", ["bash", "-c", " ".join(args[i:])])
""",
    "my-mpirun": """if args == ["--version"]:
    print("mpirun (Open MPI) 4.1.5")
    sys.exit(0)
n, env, i = 1, {}, 0
while args[i].startswith("-"):  # -n N, -x K=V, --hostfile F
    if args[i] == "-x":
        env.update([args[i + 1].split("=", 1)])
    elif args[i] == "-n":
        n = int(args[i + 1])
    i += 2
run_copies(args[i:], [dict(env, OMPI_COMM_WORLD_RANK=str(r)) for r in range(n)])
""",
    "srun": """n, i = 1, 0
while args[i].startswith("-"):  # --share --exclusive=user -N nodes -n tasks
    if args[i] in ("-N", "-n"):
        n = int(args[i + 1]) if args[i] == "-n" else n
        i += 1
    i += 1
run_copies(args[i:], [{"SLURM_PROCID": str(r)} for r in range(n)])
""",
    "qsub": """tasks, env, i = 1, {}, 0
while args[i].startswith("-"):  # -cwd -t 1-N -S sh -q Q -N name -e d -o d -pe orte n -v K=V,..
    if args[i] == "-t":
        tasks = int(args[i + 1].split("-")[1])
    elif args[i] == "-v":
        env.update(kv.split("=", 1) for kv in args[i + 1].split(","))
    i += {"-cwd": 1, "-pe": 3}.get(args[i], 2)
run_copies(["bash"] + args[i:], [dict(env, SGE_TASK_ID=str(t)) for t in range(1, tasks + 1)])
""",
    "java": """i = args.index("org.apache.hadoop.yarn.dmlc.Client") + 1
while args[i].startswith("-"):  # -file F -jobname J -tempdir T -queue Q
    i += 2
n, s = int(os.environ["DMLC_NUM_WORKER"]), int(os.environ["DMLC_NUM_SERVER"])
run_copies(args[i:], [{"DMLC_ROLE": "server"}] * s + [{"DMLC_ROLE": "worker"}] * n)
""",
    "hadoop": """print("Hadoop 3.3.6" if args == ["version"] else "/opt/hadoop/lib/*")
""",
}


def _write_fake(path, name: str) -> None:
    path.write_text(PRELUDE + FAKES[name])
    path.chmod(0o755)


def _records(log, program: str):
    with open(log, encoding="utf-8") as f:
        return [r for r in map(json.loads, f) if r["program"] == program]


def _options(launcher: str, tmp_path):
    """The launch options of ``launcher`` (fakes written) and the check of what they got."""
    bin_dir, log = tmp_path / "bin", str(tmp_path / "fake.jsonl")
    if launcher == "ssh":
        _write_fake(bin_dir / "ssh", "ssh")
        (tmp_path / "hosts").write_text("127.0.0.1\n127.0.0.2:22\n")  # both this machine

        def check():
            calls = _records(log, "ssh")
            assert sorted(c["argv"][2] for c in calls) == ["127.0.0.1", "127.0.0.1", "127.0.0.2"]
            roles = sorted(c["argv"][-1].split("DMLC_ROLE=")[1].split(";")[0] for c in calls)
            assert roles == ["server", "worker", "worker"]
        return ["-H", str(tmp_path / "hosts")], {}, check
    if launcher == "mpi":
        _write_fake(bin_dir / "my-mpirun", "my-mpirun")  # not on PATH as mpirun: --mpirun
        (tmp_path / "hosts").write_text("127.0.0.1 slots=4\n")

        def check():
            runs = [c for c in _records(log, "my-mpirun") if c["argv"] != ["--version"]]
            got = sorted((c["argv"][1], a[len("DMLC_ROLE="):]) for c in runs  # -n N -x ROLE
                         for a in c["argv"] if a.startswith("DMLC_ROLE="))
            assert got == [("1", "server"), ("2", "worker")]
            assert all("--hostfile" in c["argv"] for c in runs)
        return ["--mpirun", str(bin_dir / "my-mpirun"), "-H", str(tmp_path / "hosts")], {}, check
    if launcher == "slurm":
        _write_fake(bin_dir / "srun", "srun")

        def check():
            calls = _records(log, "srun")
            assert sorted((c["env"]["DMLC_ROLE"], c["argv"][3], c["argv"][5]) for c in calls) == [
                ("server", "1", "1"), ("worker", "2", "2")]  # -N nodes -n tasks
            assert {(c["env"]["SLURM_PARTITION"], c["env"]["SLURM_NTASKS_PER_NODE"])
                    for c in calls} == {("debug", "1")}
        return ["--partition", "debug", "--nodes", "2", "--ntasks_per_node", "1"], {}, check
    if launcher == "sge":
        _write_fake(bin_dir / "qsub", "qsub")

        def check():
            (call,) = _records(log, "qsub")
            text = " ".join(call["argv"])
            assert "-t 1-3 " in text and " -q long.q " in text and "-N gluon-deeplab" in text
        return ["--queue", "long.q", "--sge_log_dir", str(tmp_path / "sge")], {}, check
    _write_fake(bin_dir / "java", "java")  # yarn
    (tmp_path / "hadoop" / "bin").mkdir(parents=True)
    _write_fake(tmp_path / "hadoop" / "bin" / "hadoop", "hadoop")
    (tmp_path / "yarn").mkdir()
    (tmp_path / "yarn" / "dmlc-yarn.jar").write_bytes(b"")

    def check():
        (call,) = _records(log, "java")
        text = " ".join(call["argv"])
        assert "launcher.py" not in text and " -queue long.q gluon-deeplab-train " in text
        assert {k: call["env"][k] for k in ("DMLC_NUM_WORKER", "DMLC_NUM_SERVER",
                                            "DMLC_JOB_CLUSTER")} == {
            "DMLC_NUM_WORKER": "2", "DMLC_NUM_SERVER": "1", "DMLC_JOB_CLUSTER": "yarn"}
        assert call["env"]["DMLC_PS_ROOT_PORT"].isdigit() and call["env"]["DMLC_PS_ROOT_URI"]
    return (["--queue", "long.q", "--yarn_app_dir", str(tmp_path / "yarn")],
            {"HADOOP_HOME": str(tmp_path / "hadoop")}, check)


def test_ssh_launcher_trains_to_the_end_through_its_submitter(tmp_path):
    data_dir = str(tmp_path / "data")
    make_synthetic_dataset(data_dir, num_train=4, num_val=2, size=(48, 64), num_classes=3, seed=0)
    env = launch_env(tmp_path, FAKE_LOG=str(tmp_path / "fake.jsonl"))
    options, _, check = _options("ssh", tmp_path)
    out = tmp_path / "run"
    result = run_launch(["--launcher", "ssh", "-n", "2", "-s", "1", *options],
                        train_flags(data_dir, str(out), 2), env)
    assert result.returncode == 0, outcome(result)
    check_finished_in_lockstep(out, 2)
    check()


@pytest.mark.parametrize("launcher", ["mpi", "slurm", "sge", "yarn"])
def test_cluster_launcher_runs_every_process_through_its_submitter(launcher, tmp_path):
    """Each submitter gets its options and runs the scheduler's, servers' and workers'
    command (``true`` here: the ssh test trains through the same tracker to the end)."""
    env = launch_env(tmp_path, FAKE_LOG=str(tmp_path / "fake.jsonl"))
    env.pop("JAVA_HOME", None)
    options, extra_env, check = _options(launcher, tmp_path)
    env.update(extra_env)
    true = tmp_path / "bin" / "gluon-deeplab-train"  # YARN's containers run the command
    true.write_text("#!/bin/sh\nexec true\n")
    true.chmod(0o755)
    out = tmp_path / "run"
    result = run_launch(["--launcher", launcher, "-n", "2", "-s", "1", "--python", "true",
                         *options], train_flags("data", str(out), 2), env)
    assert result.returncode == 0, outcome(result)
    assert not out.exists()
    check()


class _FakeKubernetes(BaseHTTPRequestHandler):
    """Records what is created; answers as the API server would (kind, metadata)."""

    created: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.created.append((self.path, body))
        kind = "Job" if self.path.endswith("/jobs") else "Service"
        reply = json.dumps({"kind": kind, "apiVersion": body.get("apiVersion", "v1"),
                            "metadata": body["metadata"]}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def test_kubernetes_launch_creates_scheduler_server_and_worker_jobs(tmp_path, monkeypatch):
    kube_config = pytest.importorskip("kubernetes.config.kube_config")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeKubernetes)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _FakeKubernetes.created = []
    (tmp_path / "kubeconfig").write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
        f"clusters: [{{name: fake, cluster: {{server: 'http://127.0.0.1:{server.server_port}'}}}}]\n"
        "users: [{name: fake, user: {token: fake}}]\n"
        "contexts: [{name: fake, context: {cluster: fake, user: fake}}]\n")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))  # read at import:
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "kubeconfig"))
    try:
        code = launch_main(["--launcher", "kubernetes", "-n", "2", "-s", "1", "--kube_image",
                            "registry.local/gluon-deeplab:1", "--kube_namespace", "seg",
                            "--timeout", "60", "--", "--data_dir", "/data/voc", "--gpus", "0"])
    finally:
        server.shutdown()
    assert code == 0
    paths = sorted(path for path, _ in _FakeKubernetes.created)
    assert paths == ["/api/v1/namespaces/seg/services"] + ["/apis/batch/v1/namespaces/seg/jobs"] * 4
    roles = []
    for path, body in _FakeKubernetes.created:
        if path.endswith("/services"):
            assert body["metadata"]["name"] == "mx-gluon-deeplab-sched"
            continue
        (container,) = body["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e["value"] for e in container["env"]}
        roles.append((env["DMLC_ROLE"], env.get("DMLC_WORKER_ID", env.get("DMLC_SERVER_ID"))))
        assert container["image"] == "registry.local/gluon-deeplab:1"
        assert container["command"] == ["gluon-deeplab-train", "--data_dir", "/data/voc",
                                        "--gpus", "0", "--kvstore", "dist_device_sync"]
        assert {k: env[k] for k in ("DMLC_NUM_WORKER", "DMLC_NUM_SERVER", "DMLC_PS_ROOT_URI",
                                    "DMLC_PS_ROOT_PORT")} == {
            "DMLC_NUM_WORKER": "2", "DMLC_NUM_SERVER": "1",
            "DMLC_PS_ROOT_URI": "mx-gluon-deeplab-sched", "DMLC_PS_ROOT_PORT": "9091"}
    assert sorted(roles, key=str) == sorted(
        [("scheduler", None), ("server", "0"), ("worker", "0"), ("worker", "1")], key=str)
    assert not os.path.exists(tmp_path / "run")
