"""OpenMP's wait policy: passive unless the user chose one, set before torch is imported."""

import os
import subprocess
import sys

from .conftest import ROOT

CODE = "import os, sar_despeckle_plugin; print(os.environ['OMP_WAIT_POLICY'])"


def policy(**environment) -> str:
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    env.update(environment, PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_importing_the_plugin_makes_waiting_threads_sleep():
    assert policy() == "PASSIVE"


def test_a_policy_the_user_chose_is_kept():
    assert policy(OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"


def test_no_module_of_the_package_imports_torch_before_the_policy_is_set():
    # The policy only counts if it precedes torch's OpenMP start: the package's first import
    # must not pull torch in.
    code = "import sys, sar_despeckle_plugin; print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": ROOT}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
