"""Check a built wheel the way a user meets it: installed without extras into a fresh venv.

Run by `make package-check` with the fresh venv's Python, from a directory outside the checkout (so that every
import comes from the installed wheel, never from the source tree): every module the wheel ships must import, the
wheel must hold nothing of the development package, and `wfboost --help` (and each command's `--help`) must work.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path


def modules_in(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    stray = [name for name in names if name.startswith("wfboost_dev/") or name.startswith("tests/")]
    if stray:
        raise SystemExit(f"the wheel ships development files: {', '.join(stray[:5])}")
    modules = []
    for name in names:
        if name.startswith("wfboost/") and name.endswith(".py"):
            module = name[: -len(".py")].replace("/", ".")
            modules.append(module.removesuffix(".__init__"))
    return sorted(modules)


def main() -> int:
    wheel = Path(sys.argv[1])
    modules = modules_in(wheel)
    for module in modules:
        if module.endswith(".__main__"):
            continue  # running it is what the `--help` checks below do
        imported = importlib.import_module(module)
        where = Path(imported.__file__ or "")
        if "site-packages" not in where.parts:
            raise SystemExit(f"{module} was imported from {where}, not from the installed wheel")
    print(f"{len(modules)} modules of {wheel.name} import without the development extras")
    wfboost = Path(sys.executable).parent / "wfboost"
    names: tuple[str, ...] = importlib.import_module("wfboost.cli").COMMAND_MODULES  # every command, from the wheel
    commands: list[list[str]] = [[], *([c] for c in names)]
    for command in commands:
        done = subprocess.run([str(wfboost), *command, "--help"], capture_output=True, text=True, env=dict(os.environ))
        if done.returncode != 0 or "usage:" not in done.stdout:
            raise SystemExit(f"wfboost {' '.join(command)} --help failed ({done.returncode}): {done.stderr.strip()}")
    print(f"wfboost --help and {len(commands) - 1} commands' --help work")
    return 0


if __name__ == "__main__":
    sys.exit(main())
