"""cifarbench installed, not cloned: the wheel holds the shipped configs; its CLI works from any folder."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel pip builds from this checkout (with this environment's setuptools: nothing downloaded)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out),
         str(REPO)],
        check=True, env={**os.environ, "PIP_FIND_LINKS": ""},
    )  # fmt: skip
    (built,) = out.glob("cifarbench-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel installed (not editable) in a folder of its own; its dependencies are this environment's."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
    )
    return target


def run_installed(target: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m cifarbench ARGS`` with the installed copy first on the path, from ``cwd``."""
    environment = {**os.environ, "PYTHONPATH": str(target)}
    return subprocess.run(
        [sys.executable, "-m", "cifarbench", *args], cwd=cwd, env=environment, capture_output=True, text=True
    )


@pytest.mark.slow
def test_the_wheel_holds_every_shipped_config_and_no_tests(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(path.name for path in (REPO / "src" / "cifarbench" / "configs").glob("*.yaml"))
    assert shipped == ["demo.yaml", "fast.yaml"]
    for name in shipped:
        assert f"cifarbench/configs/{name}" in names
    assert "cifarbench/data/pipelines.py" in names and "cifarbench/callbacks/timing.py" in names
    assert not [name for name in names if name.startswith(("tests/", "benchmarks/"))]


@pytest.mark.slow
def test_the_base_install_is_the_callbacks_and_the_cli_is_an_extra(wheel):
    metadata = zipfile.ZipFile(wheel).read(
        next(name for name in zipfile.ZipFile(wheel).namelist() if name.endswith("METADATA"))
    )
    requires = [
        line.split(":", 1)[1].strip()
        for line in metadata.decode().splitlines()
        if line.startswith("Requires-Dist")
    ]
    base = sorted(requirement.split(">")[0] for requirement in requires if "extra ==" not in requirement)
    assert base == ["lightning", "torch"]
    cli = [requirement for requirement in requires if 'extra == "cli"' in requirement]
    assert any(requirement.startswith("torchvision") for requirement in cli)
    assert any(requirement.startswith("jsonargparse") for requirement in cli)


@pytest.mark.slow
def test_the_installed_cli_runs_from_an_empty_folder_with_configs_by_name(installed, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    origin = subprocess.run(
        [sys.executable, "-c", "import cifarbench; print(cifarbench.__file__)"],
        cwd=empty, env={**os.environ, "PYTHONPATH": str(installed)}, capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    assert origin.startswith(str(installed))  # the installed copy, not this checkout
    listed = run_installed(installed, empty, "--help")
    assert listed.returncode == 0 and all(
        verb in listed.stdout for verb in ("fit", "lab", "inspect", "compare")
    )
    demo = run_installed(installed, empty, "fit", "--config", "demo", "--print_config")
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert "synthetic: 2048" in demo.stdout and "limit_train_batches: 12" in demo.stdout
    assert not list(empty.iterdir())  # nothing written where it ran


@pytest.mark.slow
def test_print_config_gives_the_same_defaults_from_the_wheel_and_from_the_clone(installed, tmp_path):
    from_wheel = run_installed(installed, tmp_path, "fit", "--print_config")
    from_clone = subprocess.run(
        [sys.executable, "-m", "cifarbench", "fit", "--print_config"], cwd=REPO, capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )  # fmt: skip
    assert from_wheel.returncode == 0 and from_clone.returncode == 0, from_wheel.stderr[-2000:]
    assert from_wheel.stdout == from_clone.stdout
    assert "max_epochs: 5" in from_wheel.stdout and "lr: 0.1" in from_wheel.stdout


def test_without_the_cli_extra_the_command_says_what_to_install(tmp_path):
    """The base install has no jsonargparse: `cifarbench` names the extra instead of a traceback."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] == 'jsonargparse':\n"
        "            raise ModuleNotFoundError(\"No module named 'jsonargparse'\", name='jsonargparse')\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-m", "cifarbench", "fit"],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "pip install 'cifarbench[cli]'" in result.stderr and "jsonargparse" in result.stderr
    assert "Traceback" not in result.stderr
