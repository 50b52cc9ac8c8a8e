"""The wheel installs one package, ``lensflow``, whose commands work from any folder.

A wheel is built from this checkout and installed, without dependencies, into a fresh
virtual environment whose other packages come from the test environment's site-packages (a
``.pth`` line: no download). Its commands then run from an empty folder, with a home and a
cache of their own: nothing is found through the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("dist")
    build = ROOT / "build"  # setuptools' in-tree build folder: removed after, unless it was there
    had_build = build.exists()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            str(ROOT),
            "-w",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    if not had_build:
        shutil.rmtree(build, ignore_errors=True)
    (built,) = out.glob("lensflow-*.whl")
    yield built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A venv holding only the wheel; dependencies through a .pth to our site-packages."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # the test environment's packages, after the wheel's own lensflow (a .pth adds a folder
    # without running that folder's .pth files, so the editable lensflow stays out)
    (site / "zz-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    yield venv


def run(venv: Path, *args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "COLUMNS": "200",
        **{k: v for k, v in os.environ.items() if k.startswith(("LANG", "LC_"))},
    }
    return subprocess.run(
        [str(venv / "bin" / "lensflow"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_wheel_holds_only_the_lensflow_package_with_its_shipped_files(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()

    assert {name.split("/")[0] for name in names} == {
        "lensflow",
        f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info",
    }
    for shipped in [
        "lensflow/configs/models.yaml",
        "lensflow/configs/demo/pipeline.yaml",
        "lensflow/configs/mosquitto.conf",
        "lensflow/cloud/storage/alembic.ini",
        "lensflow/shared/classifiers/imagenet_labels.yaml",
        "lensflow/edge/agent.py",
    ]:
        assert shipped in names


def test_installed_commands_work_from_any_folder(installed: Path, tmp_path: Path) -> None:
    # given an empty working folder and a home of its own
    cwd, home = tmp_path / "anywhere", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    # when models are listed, then the shipped manifest is read and the cache is the user's
    listed = run(installed, "models", "list", cwd=cwd, home=home)
    assert listed.returncode == 0, listed.stderr
    assert "efficientnet-lite0" in listed.stdout
    assert str(home / ".cache" / "lensflow" / "models") in listed.stdout.replace("\n", "")
    # and the packaged demo pipeline, found by name, checks
    where = run(installed, "configs", "path", "demo/pipeline.yaml", cwd=cwd, home=home)
    assert where.returncode == 0, where.stderr
    pipeline = Path(where.stdout.strip())
    assert pipeline.is_file() and installed in pipeline.parents
    checked = run(installed, "pipeline", "check", str(pipeline), cwd=cwd, home=home)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "4 nodes, no errors" in checked.stdout
    assert "repository root" not in checked.stdout + checked.stderr
    assert list(cwd.iterdir()) == []  # nothing written where it ran
