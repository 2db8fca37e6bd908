"""Precise return types for users' type checkers: ``mypy --strict`` on a user's script
(tests/typing_scripts/user_script.py) passes, and on one with mistakes it finds each of them."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).with_name("typing_scripts")

pytestmark = pytest.mark.skipif(shutil.which("mypy") is None and not Path(sys.executable).with_name("mypy").exists(),
                                reason="mypy is not installed (requirements-dev.txt)")


def mypy(script: Path, cache: Path) -> subprocess.CompletedProcess:
    # Only the user's script is checked: lverse's own modules are followed for their types.
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
                           "--ignore-missing-imports", "--cache-dir", str(cache), str(script)],
                          capture_output=True, text=True, timeout=600)


def test_a_users_script_type_checks(tmp_path):
    done = mypy(HERE / "user_script.py", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mistakes_are_found(tmp_path):
    done = mypy(HERE / "wrong_script.py", tmp_path)
    assert done.returncode == 1
    assert 'Incompatible types in assignment (expression has type "str", variable has type "int")' in done.stdout
    assert 'expression has type "list[Image]", variable has type "Tensor"' in done.stdout
    assert 'No overload variant of "caption" matches argument types "str", "bool"' in done.stdout
