"""The floors of rap_ros (docs/architecture.md): each module imports only its own floor and the
floors below it, and the torch-free / ROS-free floors stay so.

Every import of every module under rap_ros/ is read with ``ast``, at module level and inside
functions, dynamic ones included (``importlib.import_module`` / ``__import__`` of a literal
name). The checker also runs on small fake trees, to show that it fails where it must.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

# The floors, bottom to top: (module prefix, rank, torch, ros). A module may import rap_ros
# modules whose rank is at most its own. torch / ros say where the floor may import torch
# (and the rap_ros modules that import it: TORCH_MODULES) and ROS (rclpy, message packages,
# and rap_ros.nodes): "never", "local" (inside functions only: an optional dependency or a
# measured start-up cost) or "yes". The longest matching prefix decides.
FLOORS = [
    ("rap_ros", 0, "never", "never"),                       # the package root: imports nothing
    ("rap_ros.ros_env", 0, "never", "never"),
    ("rap_ros.geometry", 1, "never", "never"),
    ("rap_ros.contract", 2, "never", "never"),
    ("rap_ros.metrics", 3, "never", "never"),
    ("rap_ros.io", 4, "never", "never"),
    ("rap_ros.synth", 5, "never", "never"),
    ("rap_ros.model", 6, "yes", "never"),
    ("rap_ros.backend", 7, "local", "never"),
    ("rap_ros.backend.torch_backend", 7, "yes", "never"),
    ("rap_ros.backend.export", 7, "yes", "never"),
    ("rap_ros.pipeline", 8, "never", "never"),
    ("rap_ros.odometry", 9, "never", "never"),
    ("rap_ros.nodes", 10, "local", "yes"),
    ("rap_ros.evaluation", 11, "local", "local"),
    ("rap_ros.evaluation.live", 11, "local", "yes"),
    ("rap_ros.tools", 12, "local", "local"),
]
TORCH_MODULES = ("torch", "torchvision", "rap_ros.model",
                 "rap_ros.backend.torch_backend", "rap_ros.backend.export")
ROS_PACKAGES = ("rclpy", "rcl_interfaces", "tf2_ros", "builtin_interfaces", "launch",
                "launch_ros", "ament_index_python", "rosidl_runtime_py", "rap_ros.nodes")


def _within(name, prefix):
    return name == prefix or name.startswith(prefix + ".")


def floor_of(module):
    """The FLOORS row of a module name (longest prefix), or None."""
    rows = [row for row in FLOORS
            if _within(module, row[0]) and (row[0] != "rap_ros" or module == "rap_ros")]
    return max(rows, key=lambda row: len(row[0])) if rows else None


def is_torch(name):
    return any(_within(name, prefix) for prefix in TORCH_MODULES)


def is_ros(name):
    top = name.split(".")[0]
    return (any(_within(name, prefix) for prefix in ROS_PACKAGES)
            or top.endswith("_msgs") or top.endswith("_srvs"))


def _dynamic_import(call):
    """The module name of ``importlib.import_module("...")``, ``import_module("...")`` or
    ``__import__("...")`` with a literal absolute name, else None."""
    func = call.func
    if isinstance(func, ast.Name):
        dynamic = func.id in ("import_module", "__import__")
    else:
        dynamic = (isinstance(func, ast.Attribute) and func.attr == "import_module"
                   and isinstance(func.value, ast.Name) and func.value.id == "importlib")
    if not dynamic or not call.args:
        return None
    name = call.args[0]
    if isinstance(name, ast.Constant) and isinstance(name.value, str) \
            and not name.value.startswith("."):
        return name.value
    return None


def imports_of(path, module):
    """(imported module name, line, inside a function?) for every import in a file, dynamic
    imports of a literal name included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []

    def visit(node, local):
        for child in ast.iter_child_nodes(node):
            inside = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                  ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, local) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: resolve against the package
                    package = module.split(".")
                    if path.name != "__init__.py":
                        package = package[:-1]
                    package = package[:len(package) - (child.level - 1)]
                    base = ".".join(package + ([base] if base else []))
                # "from pkg import mod" imports pkg.mod when mod is a module
                for alias in child.names:
                    found.append((f"{base}.{alias.name}" if _within(base, "rap_ros")
                                  and _is_module(base, alias.name) else base,
                                  child.lineno, local))
            elif isinstance(child, ast.Call) and _dynamic_import(child):
                found.append((_dynamic_import(child), child.lineno, local))
            visit(child, inside)

    def _is_module(base, name):
        folder = path
        while folder.name != "rap_ros":
            folder = folder.parent
        target = folder.parent.joinpath(*base.split("."), name)
        return target.with_suffix(".py").is_file() or (target / "__init__.py").is_file()

    visit(tree, False)
    return found


def violations(package_dir):
    """Every import of the package at ``package_dir`` that breaks the FLOORS rules."""
    package_dir = pathlib.Path(package_dir)
    problems = []
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        row = floor_of(module)
        where = f"{path.relative_to(package_dir.parent)}"
        if row is None:
            problems.append(f"{where}: {module} is on no floor (add it to FLOORS)")
            continue
        _, rank, torch_rule, ros_rule = row
        for name, line, local in imports_of(path, module):
            at = f"{where}:{line}: {module} imports {name}"
            if _within(name, "rap_ros"):
                target = floor_of(name)
                if target is None:
                    problems.append(f"{at}, which is on no floor")
                elif target[1] > rank:
                    problems.append(f"{at} (floor {target[0]}, above {row[0]})")
            for kind, rule, matches in (("torch", torch_rule, is_torch),
                                        ("ROS", ros_rule, is_ros)):
                if not matches(name) or rule == "yes":
                    continue
                if rule == "never" or (rule == "local" and not local):
                    scope = "" if rule == "never" else " at module level"
                    problems.append(f"{at}: {row[0]} may not import {kind}{scope}")
    return problems


def test_rap_ros_keeps_its_floors():
    problems = violations(ROOT / "rap_ros")
    assert not problems, "\n".join(problems)


def test_every_floor_is_documented():
    text = (ROOT / "docs" / "architecture.md").read_text()
    for prefix, *_ in FLOORS[1:]:
        assert f"`{prefix.removeprefix('rap_ros.')}" in text, prefix


# ------------------------------------------------------------------ the checker fails


def _fake_tree(tmp_path, files):
    root = tmp_path / "rap_ros"
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for folder in path.relative_to(root).parents:
            init = root / folder / "__init__.py"
            if not init.exists():
                init.write_text("")
        path.write_text(text)
    return root


FAKE_CASES = {
    "lower floor imports a higher one": (
        {"geometry/bad.py": "from rap_ros.pipeline.streaming import WindowStream\n",
         "pipeline/streaming.py": ""}, "floor rap_ros.pipeline, above rap_ros.geometry"),
    "the same, inside a function": (
        {"io/bad.py": "def f():\n    from rap_ros.nodes import runner\n",
         "nodes/runner.py": ""}, "above rap_ros.io"),
    "pipeline imports torch in a function": (
        {"pipeline/bad.py": "def f():\n    import torch\n"}, "may not import torch"),
    "pipeline imports the torch model": (
        {"pipeline/bad.py": "from rap_ros.model import codec\n", "model/codec.py": ""},
        "may not import torch"),
    "contract imports rclpy": (
        {"contract/bad.py": "import rclpy\n"}, "may not import ROS"),
    "io imports a message package": (
        {"io/bad.py": "from sensor_msgs.msg import Image\n"}, "may not import ROS"),
    "odometry imports the nodes": (
        {"odometry/bad.py": "from rap_ros.nodes import conversions\n",
         "nodes/conversions.py": ""}, "above rap_ros.odometry"),
    "onnx backend imports the model at module level": (
        {"backend/onnx_backend.py": "from rap_ros.model.checkpoint import load_weights\n",
         "model/checkpoint.py": ""}, "may not import torch at module level"),
    "evaluation imports rclpy at module level": (
        {"evaluation/run.py": "import rclpy\n"}, "may not import ROS at module level"),
    "geometry imports the nodes through importlib": (
        {"geometry/bad.py": "import importlib\n\n\ndef f():\n"
                            "    return importlib.import_module('rap_ros.nodes.runner')\n",
         "nodes/runner.py": ""}, "above rap_ros.geometry"),
    "io imports the pipeline through __import__": (
        {"io/bad.py": "__import__('rap_ros.pipeline.streaming')\n",
         "pipeline/streaming.py": ""}, "above rap_ros.io"),
    "pipeline imports torch through import_module": (
        {"pipeline/bad.py": "from importlib import import_module\n\n"
                            "torch = import_module('torch')\n"}, "may not import torch"),
    "a module on no floor": ({"helpers.py": ""}, "on no floor"),
}


@pytest.mark.parametrize("case", list(FAKE_CASES))
def test_checker_catches(tmp_path, case):
    files, message = FAKE_CASES[case]
    problems = violations(_fake_tree(tmp_path, files))
    assert any(message in problem for problem in problems), problems


def test_checker_allows_what_the_floors_allow(tmp_path):
    root = _fake_tree(tmp_path, {
        "backend/torch_backend.py": "import torch\nfrom rap_ros.model import checkpoint\n",
        "backend/shared.py": "def f():\n    from rap_ros.backend import export\n",
        "backend/export.py": "import torch\n",
        "model/checkpoint.py": "import torch\nfrom rap_ros.contract import config\n",
        "contract/config.py": "",
        "pipeline/plans.py": "from rap_ros.geometry import rotations\nimport scipy\n",
        "geometry/rotations.py": "",
        "tools/up.py": "def main():\n    import rclpy\n    from rap_ros.nodes import runner\n",
        "nodes/runner.py": "import rclpy\nfrom rap_ros.pipeline import plans\n",
        "evaluation/live.py": "import rclpy\nfrom rap_ros.nodes import runner\n",
    })
    assert violations(root) == []
