#!/usr/bin/env python3
"""The two commands of a fresh clone (Python >= 3.11 with pip, nothing else):

    python quickstart.py          # makes .venv if it is missing (pinned CPU torch), then a real search
    python quickstart.py test     # the test suite, in the same environment

The first runs ``run_search.py`` with QUICK_START below (successive halving over 150 configs of the
Lab 3 space on the bundled digits, the best 5 retrained for 100 epochs, the winner's pictures); extra
arguments go to ``run_search.py`` (``python quickstart.py --n 30 --no-retrain``). ``test`` passes extra
arguments to pytest. The environment is built once and again only when pyproject.toml or
constraints.txt change. Uses only the standard library, so it runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import urllib.request
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".hpsearch-installed"
# PyPI's Linux torch wheels bundle CUDA (gigabytes); PyTorch's own index has the CPU build of the
# pinned version. Where that index cannot be reached, pip's configured sources decide.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
QUICK_START = ["--n", "150", "--dataset", "digits", "--strategy", "halving", "--top", "5", "--retrain-epochs", "100"]


def _python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _wanted() -> str:
    """What the installed environment must match: the project's requirements and pins."""
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "setup.cfg", "constraints.txt"):
        path = ROOT / name
        digest.update(path.read_bytes() if path.is_file() else b"")
    return digest.hexdigest()


def _reachable(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=5).close()
        return True
    except OSError:
        return False


def ensure_environment() -> Path:
    """``.venv`` with hpsearch installed (editable, with the test extras), made or updated once."""
    python = _python()
    if python.exists() and STAMP.is_file() and STAMP.read_text() == _wanted():
        return python
    if sys.version_info < (3, 11):  # noqa: UP036 - this script must run (and explain) on an older Python
        sys.exit(f"quickstart: hpsearch needs Python >= 3.11, this is {sys.version.split()[0]}")
    if not python.exists():
        print(f"quickstart: creating {VENV.relative_to(ROOT)} (once)", flush=True)
        try:
            venv.create(VENV, with_pip=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            sys.exit(f"quickstart: could not create {VENV} ({exc}); on Debian/Ubuntu: "
                     "apt-get install python3-venv, then run this again")
    command = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
               "-c", str(ROOT / "constraints.txt"), "-e", f"{ROOT}[test]"]
    if _reachable(TORCH_CPU_INDEX + "/"):
        command += ["--extra-index-url", TORCH_CPU_INDEX]
    print("quickstart: installing hpsearch and its dependencies (torch pinned to its CPU build)", flush=True)
    if subprocess.call(command) != 0:
        sys.exit("quickstart: pip could not install the environment (see above); fix that and run this again")
    cuda = subprocess.run([str(python), "-c", "import torch; print(torch.version.cuda or '')"],
                          capture_output=True, text=True).stdout.strip()
    if cuda:
        print(f"quickstart: note: pip installed torch built for CUDA {cuda} (no CPU build was found); it "
              "works on the CPU too, only larger", flush=True)
    STAMP.write_text(_wanted())
    return python


def main(argv: list[str]) -> int:
    python = ensure_environment()
    if argv[:1] == ["test"]:
        return subprocess.call([str(python), "-m", "pytest", "-q", *argv[1:]], cwd=ROOT)
    args = argv or QUICK_START
    print("quickstart: run_search.py " + " ".join(args), flush=True)
    return subprocess.call([str(python), str(ROOT / "run_search.py"), *args], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
