"""Data-parallel evaluation under torchrun (2 CPU processes, gloo) equals one process."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import convert2snn

from .convert2snn.nets import RandomNet

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")

SCRIPT = """
import json, sys, warnings
import numpy as np
import convert2snn
warnings.simplefilter("ignore")
snn = convert2snn.load(sys.argv[1])
with np.load(sys.argv[2]) as f:
    x, y = f["x_test"], f["y_test"]
r = snn.evaluate(x, y, timesteps=[4, 16], batch_size=10)
hist = snn.spike_counts(x, timesteps=16, mode=1, )
out = snn.predict(x, timesteps=16, batch_size=10)
import torch.distributed as dist
if dist.get_rank() == 0:
    json.dump({"result": r.as_dict(), "hist": {k: v.tolist() for k, v in hist.items()}, "predict": out.tolist(),
               "world": dist.get_world_size()}, open(sys.argv[3], "w"))
"""


def _torchrun(*args, cwd):
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 2, 8, 8, generator=g)
    net = RandomNet(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snn = convert2snn.convert(net, "rate", x, progress=False)
    snn.save(d / "snn.c2s")
    y = net(x).argmax(1).numpy()
    y[::7] = (y[::7] + 1) % 5  # some wrong labels, so that accuracy is not trivially 1
    np.savez(d / "data.npz", x_train=x.numpy(), y_train=y, x_test=x.numpy(), y_test=y)
    (d / "run.py").write_text(SCRIPT)
    return d, snn, x.numpy(), y


def test_two_processes_equal_one(workdir):
    d, snn, x, y = workdir
    proc = _torchrun("run.py", "snn.c2s", "data.npz", "out.json", cwd=d)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    got = json.loads((d / "out.json").read_text())
    assert got["world"] == 2
    single = snn.evaluate(x, y, timesteps=[4, 16], batch_size=10).as_dict()
    for key in ("accuracy", "ann_accuracy", "spikes_per_neuron", "sops", "layer_spikes_per_neuron", "samples"):
        assert got["result"][key] == single[key], key  # shards of 20 = the single run's batches 3-4: bit-identical
    for layer, rs in single["layer_correlation"].items():
        np.testing.assert_allclose(got["result"]["layer_correlation"][layer], rs, rtol=1e-9)
    hist = snn.spike_counts(x, timesteps=16, mode=1)
    assert got["hist"] == {k: v.tolist() for k, v in hist.items()}
    np.testing.assert_array_equal(
        np.array(got["predict"], dtype=np.float32), snn.predict(x, timesteps=16, batch_size=10)
    )


def test_cli_evaluate_under_torchrun_reports_once(workdir):
    d, snn, x, y = workdir
    proc = _torchrun(
        "-m",
        "convert2snn",
        "evaluate",
        "snn.c2s",
        "--data",
        "data.npz",
        "-T",
        "4",
        "16",
        "--batch-size",
        "10",
        "--json",
        "cli.json",
        "--quiet",
        cwd=d,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.count("ANN accuracy:") == 1, proc.stdout  # printed by rank 0 only
    assert "(40 samples)" in proc.stdout
    got = json.loads((d / "cli.json").read_text())
    single = snn.evaluate(x, y, timesteps=[4, 16], batch_size=10)
    assert got["accuracy"] == single.accuracy and got["samples"] == 40


def test_shards_cover_every_sample_once():
    from convert2snn.distributed import shard

    for n in (1, 2, 5, 40, 41, 103):
        for world in range(1, min(n, 6) + 1):
            parts = [shard(n, r, world) for r in range(world)]
            assert [i for p in parts for i in range(n)[p]] == list(range(n))
            assert max(p.stop - p.start for p in parts) - min(p.stop - p.start for p in parts) <= 1
