"""The soak test (tests/soak.py) in a fresh interpreter: 150 s in the suite, longer with
``--soak-seconds``. It prints its one-line summary, which the README quotes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.soak

SCRIPT = Path(__file__).with_name("soak.py")


def test_soak(request, tmp_path, capsys):
    seconds = request.config.getoption("--soak-seconds")
    report = tmp_path / "soak.json"
    # A hang inside it is caught by its own timeouts; this one bounds the whole run.
    done = subprocess.run([sys.executable, str(SCRIPT), "--seconds", str(seconds), "--report", str(report)],
                          capture_output=True, text=True, timeout=seconds + 600)
    assert report.exists(), f"the soak died (exit code {done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}"
    result = json.loads(report.read_text())
    with capsys.disabled():
        print("\n" + result["summary"])
    assert not result["problems"], "\n".join([result["summary"], *result["problems"]])
    assert done.returncode == 0, done.stderr[-3000:]
