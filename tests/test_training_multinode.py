"""Training across machines as docs/training.md describes it: two torchrun launchers, each a
"node" of one process (--nnodes=2 --nproc-per-node=1), meeting through the c10d rendezvous on a
host:port, gloo on CPUs. Here both nodes are this machine, each with its own run folder (as
nodes without a shared file system): only the process of global rank 0 writes, and it learns
what one process learns from the same configuration."""

import json
import os
import socket
import subprocess
import sys
import sysconfig

import torch

from training.checkpoints import load_checkpoint
from training.config import load_config
from training.trainer import train

from .conftest import ROOT

TINY = os.path.join(ROOT, "training", "configs", "tiny_test.toml")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_nodes_rendezvous_and_train_as_one_process(tmp_path):
    config = tmp_path / "tiny_one_epoch.toml"  # one epoch: float error stays within the tolerance
    with open(TINY) as handle:
        config.write_text(handle.read().replace("epochs = 2", "epochs = 1"))
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([sysconfig.get_paths()["purelib"], ROOT]))
    env.pop("OMP_NUM_THREADS", None)
    launchers = []
    for node in (0, 1):
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
                   "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=multinode-test",
                   f"--rdzv-conf=is_host={'true' if node == 0 else 'false'},join_timeout=120",
                   "-m", "training", "train", "--config", str(config), "--output", str(tmp_path / f"node{node}")]
        launchers.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
    logs = [launcher.communicate(timeout=300)[0] for launcher in launchers]
    assert [launcher.returncode for launcher in launchers] == [0, 0], "\n".join(logs)
    written = [node for node in (0, 1) if (tmp_path / f"node{node}").exists()]
    assert len(written) == 1, written  # the node whose process got rank 0, whichever joined first
    run = tmp_path / f"node{written[0]}"
    assert {"best.pt", "last.pt", "metrics.json"} <= set(os.listdir(run))
    assert "on cpu x 2 processes" in logs[written[0]]
    rows = json.load(open(run / "metrics.json"))["rows"]
    assert max(row["step"] for row in rows) == 8  # 64 samples / global batch 8, as one process
    single = train(load_config(str(config)), str(tmp_path / "single"), log=lambda message: None)
    together = load_checkpoint(str(run / "last.pt"))["model"]
    for key, value in single.state_dict().items():
        torch.testing.assert_close(together[key], value, rtol=1e-3, atol=1e-4)
