"""The embedding example in README.md runs as printed, and does what the README says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def _embedding_example() -> str:
    section = README.read_text().split("## Embedding the supervisor in your own service", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "README's embedding section must hold a python code block"
    return match.group(1)


def test_the_readme_embedding_example_restarts_the_worker_that_died(tmp_path: Path) -> None:
    script = tmp_path / "embed.py"
    script.write_text(_embedding_example())

    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path, check=False)

    assert result.returncode == 0, result.stderr
    assert "choked on 'poison'" in result.stdout
    assert "restarts=1" in result.stdout
    for job in ("a.png", "b.png", "c.png"):
        assert f"did resize {job}" in result.stdout
