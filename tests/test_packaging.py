"""The built wheel carries models.toml, and the installed package finds it there."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contains_models_toml(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel, = tmp_path.glob("llmchat-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert "llmchat/models.toml" in names
        assert zf.read("llmchat/models.toml") == (ROOT / "models.toml").read_bytes()
        assert any(name.endswith("entry_points.txt") and b"llmchat = llmchat.__main__:main" in zf.read(name) for name in names)
