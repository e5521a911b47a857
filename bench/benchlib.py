"""What every benchmark script writes beside its numbers: the commit, the host, and the
JSON result under bench/results/, written under a .tmp name and renamed so a half-written
result is never left behind."""

import json
import os
import platform
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def git_commit():
    try:
        r = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, timeout=10)
        return r.stdout.decode().strip() if r.returncode == 0 else None
    except OSError:
        return None


def host(**extra):
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(), **extra}


def write_result(out_dir, prefix, now, result):
    """Writes `<out_dir>/<prefix>-<UTC timestamp>.json` and says where."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{prefix}-{now.strftime('%Y%m%dT%H%M%SZ')}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.rename(path)
    print(f"wrote {path}")
    return path
