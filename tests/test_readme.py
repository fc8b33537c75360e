"""The README's Python API example runs as written, on a folder of real PE files and a missing zip."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pip

README = Path(__file__).resolve().parents[1] / "README.md"
LAUNCHER = Path(pip.__file__).parent / "_vendor" / "distlib" / "t64.exe"


def test_the_python_api_example_runs(tmp_path: Path) -> None:
    (example,) = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "t64.exe").write_bytes(LAUNCHER.read_bytes())
    run = subprocess.run(
        [sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("samples/t64.exe benign ")
    assert lines[1] == "more.zip error: more.zip: no such file"
