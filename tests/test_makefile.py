"""The Makefile on a fresh machine: what `setup` installs is looked up after `setup` has run.

Issue 13.1: `make demo` as the very first command stopped at "plugins: command not found" because
the path of qgis_process was computed when make parsed the Makefile, before `setup` had installed
QGIS. These tests run the real Makefile's recipes in a scratch folder, with a PATH on which
qgis_process does not exist until a stand-in `setup` recipe puts it there.
"""

import os
import re
import shutil
import subprocess

import pytest

from .conftest import ROOT

MAKEFILE = os.path.join(ROOT, "Makefile")
# What the recipes exercised here run, besides qgis_process; bash is called by absolute path.
TOOLS = ("make", "grep", "mkdir", "touch", "cp", "chmod", "rm", "cat")

# Fake qgis_process.bin: records its arguments and the profile it was given; lists no plugin.
FAKE_QGIS_PROCESS = """#!/bin/sh
echo "$QGIS_CUSTOM_CONFIG_PATH $*" >> "$FAKE_LOG"
"""


@pytest.fixture
def fresh_machine(tmp_path):
    """A scratch folder whose Makefile includes the real one and replaces only the setup recipe.

    The stand-in setup "installs QGIS" by copying a fake qgis_process.bin into bin/, which is on
    the PATH but empty when make starts. Returns a function running make there.
    """
    for tool in TOOLS:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in TOOLS:
        os.symlink(shutil.which(tool), tools / tool)
    (tmp_path / "bin").mkdir()
    staged = tmp_path / "qgis_process.bin"
    staged.write_text(FAKE_QGIS_PROCESS)
    staged.chmod(0o755)
    # Same file name as the real one: the real rule `$(SETUP_STAMP): Makefile` needs it to exist.
    (tmp_path / "Makefile").write_text(
        f"include {MAKEFILE}\n"
        "# The stand-in for setup's recipe (make warns that it overrides the real one).\n"
        "$(SETUP_STAMP):\n"
        f"\tcp {staged} bin/qgis_process.bin\n"
        "\tmkdir -p $(dir $@) && touch $@\n"
    )
    log = tmp_path / "qgis_process.log"
    # A stripped environment: no MAKEFLAGS from an enclosing `make test`, no real qgis_process.
    env = {"PATH": f"{tmp_path / 'bin'}:{tools}", "HOME": str(tmp_path), "LC_ALL": "C",
           "FAKE_LOG": str(log)}

    def make(*args):
        done = subprocess.run([shutil.which("make"), "--no-print-directory", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=60)
        calls = log.read_text().splitlines() if log.exists() else []
        return done, calls

    return make


def test_qgis_process_is_found_when_setup_installs_it_in_the_same_run(fresh_machine, tmp_path):
    done, calls = fresh_machine("qgis-process", "ARGS=--version")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "command not found" not in done.stderr
    profile = str(tmp_path / ".qgis-profile")
    # qgis-profile lists the plugins, enables ours, then qgis-process passes ARGS on.
    assert calls == [f"{profile} plugins", f"{profile} plugins enable sar_despeckle_plugin",
                     f"{profile} --version"], done.stdout + done.stderr
    assert (tmp_path / ".qgis-profile" / ".enabled").exists()


def test_demo_is_given_the_qgis_process_that_setup_installed(fresh_machine, tmp_path):
    python = tmp_path / "python"  # stands in for the venv's: records how demo.py is started
    python.write_text('#!/bin/sh\necho "python $*" >> "$FAKE_LOG"\n')
    python.chmod(0o755)
    done, calls = fresh_machine("demo", f"PY={python}")
    assert done.returncode == 0, done.stdout + done.stderr
    demo = [call for call in calls if "scripts/demo.py" in call]
    assert len(demo) == 1, calls
    assert f"--qgis-process {tmp_path / 'bin' / 'qgis_process.bin'} " in demo[0], demo[0]


def test_no_parse_time_shell_lookups():
    """`VAR := $(shell ...)` runs while make reads the file, before any recipe (setup) has run."""
    with open(MAKEFILE, encoding="utf-8") as handle:
        text = handle.read()
    offending = [line for line in text.splitlines()
                 if re.match(r"^\s*(export\s+)?[A-Za-z_][A-Za-z0-9_]*\s*(:=|::=|!=)", line)
                 and ("$(shell" in line or "!=" in line)]
    assert not offending, offending
