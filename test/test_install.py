"""The install: `make demo`'s set-up (scripts/setup.sh runtime) brings no torch, and what the
demo and the nodes run works with torch impossible to import.

The resolution test asks pip (dry run, against the package registries the set-up uses) what
the runtime requirements would install on an empty environment; the set-up test runs
`make demo`'s set-up itself (`scripts/setup.sh runtime`) into a new venv and runs the demo
there. Both need the registries, as the set-up itself does (several minutes: the set-up
installs the wheels and builds the interface packages).
"""
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
TORCH_LIKE = ("torch", "onnx", "triton")  # what the train extra brings, and CUDA's kin


def setup_list(mode):
    out = subprocess.run(["bash", str(ROOT / "scripts/setup.sh"), "--list", mode],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return out.stdout.split()


def test_setup_modes_list_torch_only_for_dev():
    runtime, dev = setup_list("runtime"), setup_list("dev")
    assert not [r for r in runtime if r.split("=")[0].lower() in TORCH_LIKE], runtime
    assert "torch==2.13.0" in dev and "onnxruntime==1.32.0" in runtime
    assert any(r.startswith("ros-") and "rclpy" in r for r in runtime)


def test_runtime_setup_resolves_without_torch(tmp_path):
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--disable-pip-version-check", "--report", str(report), *setup_list("runtime")],
        capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0 and "No matching distribution" not in result.stderr:
        pytest.skip(f"package registries unreachable: {result.stderr[-300:]}")
    assert result.returncode == 0, result.stderr[-2000:]
    names = {item["metadata"]["name"].lower()
             for item in json.loads(report.read_text())["install"]}
    assert "onnxruntime" in names and "gtsam" in names
    assert not [n for n in names if n in TORCH_LIKE or n.startswith("nvidia-")], sorted(names)


BLOCK_TORCH = """
import importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'onnx'):
            raise ImportError(f'{name} is blocked: the runtime install has no torch')
sys.meta_path.insert(0, NoTorch())
"""

RUNTIME_PATH = """
import numpy as np
import rap_ros.tools.demo, rap_ros.tools.evaluate, rap_ros.tools.up
from rap_ros.nodes import trajectory_estimator, view_predictor
from rap_ros.evaluation import live, estimators
from rap_ros.backend.shared import get_backend
from rap_ros.odometry.factory import make_odometry
from rap_ros.pipeline.views import ViewPipeline
from rap_ros.synth.dataset import make_drive
drive = make_drive(3, frames=12, height=64, width=64)
backend = get_backend('onnx')
odometry = make_odometry('rap', drive.K, backend=backend)
results = [odometry.push(frame, i / 10) for i, frame in enumerate(drive.frames)]
rel = np.linalg.inv(drive.c2w[0]) @ drive.c2w[:backend.config.frames]
frames = ViewPipeline(backend).predict(drive.frames[0], drive.K, rel)
assert 'torch' not in sys.modules and len(results) == 12 and len(frames)
print('runtime path ok')
"""


UNREACHABLE = ("Failed to establish", "Temporary failure in name resolution", "ConnectionError",
               "Network is unreachable")


def test_runtime_setup_installs_no_torch_and_the_demo_runs(tmp_path):
    """`make demo`'s set-up path on an empty venv: no torch (nor onnx, nor CUDA wheels) is
    installed, and `rap-ros demo` runs there: the nodes over real topics, previews included."""
    venv = tmp_path / "venv"
    env = dict(os.environ, VENV=str(venv))
    setup = subprocess.run(["bash", str(ROOT / "scripts/setup.sh"), "runtime"], env=env,
                           capture_output=True, text=True, cwd=ROOT, timeout=1800)
    if setup.returncode != 0 and any(s in setup.stderr for s in UNREACHABLE):
        pytest.skip(f"package registries unreachable: {setup.stderr[-300:]}")
    assert setup.returncode == 0, setup.stdout[-1000:] + setup.stderr[-2000:]
    listed = subprocess.run([str(venv / "bin/python"), "-m", "pip", "list", "--format=json",
                             "--disable-pip-version-check"],
                            capture_output=True, text=True, check=True)
    names = {item["name"].lower().replace("_", "-") for item in json.loads(listed.stdout)}
    assert "onnxruntime" in names and "rap-ros" in names, sorted(names)
    assert not [n for n in names if n in TORCH_LIKE or n.startswith("nvidia-")], sorted(names)
    demo = subprocess.run([str(venv / "bin/rap-ros"), "demo", "--out", str(tmp_path / "demo"),
                           "--frames", "30"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=900)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    summary = json.loads((tmp_path / "demo" / "demo.json").read_text())
    assert summary["trajectory"]["frames"] == 30 and len(summary["preview"]["paths"]), summary


def test_demo_and_node_path_run_without_torch():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", BLOCK_TORCH + RUNTIME_PATH],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert result.returncode == 0 and "runtime path ok" in result.stdout, \
        result.stderr[-3000:]


NO_INIT = """
import os, sys, rclpy
class Seen(Exception):
    pass
def init(*args, **kwargs):  # record what the entry point left, start nothing
    raise Seen(os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE', 'unset'))
rclpy.init = init
from rap_ros.nodes import trajectory_estimator, view_predictor
from rap_ros.tools import cli
for name, start in (('trajectory_estimator', lambda: trajectory_estimator.main([])),
                    ('view_predictor', lambda: view_predictor.main([])),
                    ('rap-ros up', lambda: cli.main(['up']))):
    try:
        start()
    except Seen as seen:
        print(name, seen)
"""


def test_node_entry_points_leave_dds_discovery_as_the_user_set_it():
    """On a robot the nodes must be visible to RViz on a laptop: the console entry points
    (and `rap-ros up`) reach rclpy.init without having set ROS_AUTOMATIC_DISCOVERY_RANGE
    (only the demo, `evaluate --live`, the Makefile and the tests keep it on localhost).
    rclpy.init is replaced, so nothing joins DDS here."""
    env = {k: v for k, v in os.environ.items() if k != "ROS_AUTOMATIC_DISCOVERY_RANGE"}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run([sys.executable, "-c", NO_INIT], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=120)
    assert result.stdout.split("\n")[:3] == [
        "trajectory_estimator unset", "view_predictor unset", "rap-ros up unset"], (
        result.stdout + result.stderr[-2000:])
