"""The artefacts a user installs: the sdist and the wheel build, pass `twine check`, and work
in fresh virtual environments that know nothing of this checkout.

* Installed with no extras, the wheel runs the README's example against the bundled fake.
* Installed with the `testing` extra, a user's project whose only file is an async test asking
  for `fake_pleo` (no marker, no ini option, no conftest) passes.

`python -m build` makes the artefacts (its isolated build environment comes from PyPI), unless
`PLEO_TEST_WHEEL` names a wheel already built (and, optionally, `PLEO_TEST_SDIST` its sdist).
pip installs the dependencies from PyPI. Everything lives under pytest's tmp_path.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

# A minute or more: a build, two virtual environments and two installs from PyPI.
pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent
README = REPO_ROOT / "README.md"
# Generous: a cold pip cache downloads aiohttp and its dependencies.
INSTALL_TIMEOUT = 600


def _readme_example() -> str:
    """The README's one Python block, extracted as tests/test_readme.py does."""
    (example,) = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    return str(example)


def _clean_environment() -> dict[str, str]:
    """The environment without anything that would point a process at this checkout or at the
    virtual environment running these tests."""
    dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in dropped and not key.startswith("PYTEST_")
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(
    args: list[str | Path], *, cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=_clean_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


def _fresh_venv(path: Path) -> Path:
    """A new virtual environment without system site-packages, and without pip of its own
    (the pip running these tests installs into it, `--python`); returns its python."""
    venv.EnvBuilder(system_site_packages=False, with_pip=False, clear=True).create(path)
    python = path / ("Scripts" if os.name == "nt" else "bin") / "python"
    assert python.exists()
    return python


def _install_at_once(installs: dict[Path, str], cwd: Path) -> None:
    """`pip install` each requirement into its environment, all at the same time: the waits on
    PyPI and the unpacking overlap, which halves this module's time."""
    running = {
        python: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(python),
                "install",
                "--quiet",
                requirement,
            ],
            cwd=cwd,
            env=_clean_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for python, requirement in installs.items()
    }
    failed = []
    for python, process in running.items():
        try:
            output, _ = process.communicate(timeout=INSTALL_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        if process.returncode != 0:
            failed.append(f"{installs[python]} into {python}:\n{output}")
    assert failed == [], "\n".join(failed)


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path | None]:
    """(wheel, sdist): built from this checkout, or given by PLEO_TEST_WHEEL/PLEO_TEST_SDIST."""
    given = os.environ.get("PLEO_TEST_WHEEL")
    if given:
        given_sdist = os.environ.get("PLEO_TEST_SDIST")
        return Path(given).resolve(), Path(given_sdist).resolve() if given_sdist else None
    out = tmp_path_factory.mktemp("dist")
    # Without --sdist/--wheel, build makes the sdist and then the wheel from the sdist: a
    # file missing from the sdist breaks the wheel, and this test.
    _run([sys.executable, "-m", "build", "--outdir", out, REPO_ROOT], cwd=out, timeout=600)
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return wheel, sdist


@pytest.fixture(scope="module")
def environments(
    artefacts: tuple[Path, Path | None], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Two fresh virtual environments, by extras: "" holds the wheel alone, "testing" the
    wheel with its `testing` extra. Returns their pythons."""
    wheel, _ = artefacts
    root = tmp_path_factory.mktemp("environments")
    pythons = {extras: _fresh_venv(root / (extras or "plain")) for extras in ("", "testing")}
    _install_at_once(
        {
            pythons[""]: str(wheel),
            pythons["testing"]: f"{wheel}[testing]",
        },
        cwd=root,
    )
    return pythons


def test_the_artefacts_pass_twine_check_and_ship_the_plugin(
    artefacts: tuple[Path, Path | None], tmp_path: Path
) -> None:
    """`twine check --strict` passes on the sdist and the wheel; the wheel carries py.typed,
    the testing package and the pytest11 entry point."""
    wheel, sdist = artefacts
    files = [path for path in (wheel, sdist) if path is not None]
    _run([sys.executable, "-m", "twine", "check", "--strict", *files], cwd=tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
        declared = archive.read(entry_points).decode()
    assert {"pleo_export_async/py.typed", "pleo_export_async/testing/pytest_plugin.py"} <= names
    assert "[pytest11]" in declared
    assert "pleo_export_async.testing.pytest_plugin" in declared


def test_the_wheel_without_extras_runs_the_readme_example(
    environments: dict[str, Path], tmp_path: Path
) -> None:
    """In a fresh virtual environment with only the wheel (no extras), the README's example
    exports its job through the fake, importing the package from the environment."""
    python = environments[""]
    where = _run(
        [python, "-c", "import pleo_export_async as p; print(p.__file__)"], cwd=tmp_path
    ).stdout
    assert Path(where.strip()).is_relative_to(python.parent.parent), where
    # No extras: the plugin's needs are not there.
    _run(
        [python, "-c", "import importlib.util as u; assert not u.find_spec('pytest')"], cwd=tmp_path
    )
    result = _run([python, "-c", _readme_example()], cwd=tmp_path)
    assert "250 acknowledged, 0 rejected" in result.stdout
    assert "completed_with_errors - 25 of 250 items could not be exported" in result.stdout


USER_TEST = """
from pleo_export_async import ApiKeyAuth, ItemUpdate, PleoExportClient


async def test_my_connector_closes_the_job(fake_pleo):
    pending = fake_pleo.create_job(items=120, status="pending")
    auth = ApiKeyAuth(fake_pleo.api_key)
    async with PleoExportClient(fake_pleo.base_url, auth=auth) as client:
        job = client.job(pending.id)
        await job.start()
        await job.update(ItemUpdate.successful(i) for i in pending.item_ids)
        outcome = await job.complete()
    assert outcome.event.value == "completed"
    assert fake_pleo.journal.resent_after_ack(pending.id) == {}
"""


def test_the_wheel_with_the_testing_extra_runs_a_users_async_test(
    environments: dict[str, Path], tmp_path: Path
) -> None:
    """In a fresh virtual environment with `wheel[testing]`, a project holding nothing but an
    async test that asks for `fake_pleo` passes: no marker, no ini option, no conftest."""
    python = environments["testing"]
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_connector.py").write_text(textwrap.dedent(USER_TEST))
    result = _run([python, "-m", "pytest", "-p", "no:cacheprovider"], cwd=project)
    assert "1 passed" in result.stdout, result.stdout
    # Nothing configured pytest-asyncio: it ran in its default strict mode.
    assert re.search(r"asyncio: mode=(Mode\.)?strict", result.stdout, flags=re.IGNORECASE)
