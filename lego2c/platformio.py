"""Build generated projects with PlatformIO, without PlatformIO's registry.

`pio run` normally downloads the development platform, the toolchain and its own SCons. Here:
- the platform is our local one (boards/platformio/), linked as `platform = symlink://...`;
- the toolchain is the system arm-none-eabi-gcc, wrapped as a symlinked package;
- PlatformIO's `tool-scons` package is assembled from PyPI's `scons` wheel (PyPI is reachable
  where the PlatformIO registry may not be).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from lego2c.boards import Board, boards_dir
from lego2c.errors import LegoError, ToolchainMissingError, UsageError
from lego2c.toolchain import check_fits, require

# PlatformIO 6.2.0 requires tool-scons ~4.41101.0 (platformio/dependencies.py); PlatformIO
# encodes SCons 4.11.1 as 4.41101.0 (major, then two digits each of minor and patch).
TOOL_SCONS_VERSION = "4.41101.0"
SCONS_VERSION = "4.11.1"
PIO_INSTALL_HINT = f"{sys.executable} -m pip install platformio==6.2.0"

# Keep `pio` from phoning home: no telemetry, no upgrade checks.
PIO_ENV = {
    "PLATFORMIO_SETTING_ENABLE_TELEMETRY": "no",
    "PLATFORMIO_SETTING_CHECK_PLATFORMIO_INTERVAL": "3650",
    "PLATFORMIO_SETTING_CHECK_PRUNE_SYSTEM_THRESHOLD": "0",
}

# Loaded by PlatformIO's tool-scons package in place of the upstream scons.py launcher.
_SCONS_LAUNCHER = """\
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import SCons.Script  # noqa: E402

SCons.Script.main()
"""


def _default_core_dir() -> Path:
    return Path(os.environ.get("PLATFORMIO_CORE_DIR") or Path.home() / ".platformio")


def _toolchain_package(core_dir: Path) -> Path:
    """A PlatformIO toolchain package whose bin/ points at the system arm-none-eabi tools."""
    gcc = require("arm-none-eabi-gcc")
    gcc_version = subprocess.run(
        [gcc, "-dumpfullversion"], capture_output=True, text=True, check=True
    ).stdout.strip()
    major, minor, patch = (int(part) for part in gcc_version.split("."))
    package = core_dir / "lego2c" / "toolchain-gccarmnoneeabi"
    bin_dir = package / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in Path(gcc).resolve().parent.glob("arm-none-eabi-*"):
        link = bin_dir / tool.name
        if not link.exists():
            link.symlink_to(tool)
    manifest = {
        "name": "toolchain-gccarmnoneeabi",
        # PlatformIO's version scheme for this package: 1.MMmmpp.0 from gcc MM.mm.pp.
        "version": f"1.{major}{minor:02d}{patch:02d}.0",
        "description": f"system arm-none-eabi-gcc {gcc_version} (linked by lego2c)",
    }
    (package / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return package


def _install_tool_scons(core_dir: Path) -> None:
    package = core_dir / "packages" / "tool-scons"
    if (package / ".piopm").is_file():
        return
    with tempfile.TemporaryDirectory(prefix="lego2c-scons-") as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--disable-pip-version-check", "-q", "-d", tmp, f"scons=={SCONS_VERSION}"],
            capture_output=True, text=True,
        )
        wheels = list(Path(tmp).glob("scons-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise ToolchainMissingError(
                f"could not get SCons {SCONS_VERSION} from PyPI for PlatformIO: {proc.stderr.strip()}",
                hint=f"{sys.executable} -m pip download --no-deps scons=={SCONS_VERSION}",
            )
        shutil.rmtree(package, ignore_errors=True)
        package.mkdir(parents=True)
        with zipfile.ZipFile(wheels[0]) as wheel:
            for member in wheel.namelist():
                if member.startswith("SCons/"):
                    wheel.extract(member, package)
    (package / "scons.py").write_text(_SCONS_LAUNCHER)
    (package / "package.json").write_text(
        json.dumps({"name": "tool-scons", "version": TOOL_SCONS_VERSION}, indent=2) + "\n"
    )
    # The .piopm manifest is what PlatformIO's package manager matches against its pin; written
    # last, so an interrupted install is redone next time.
    piopm = {
        "type": "tool",
        "name": "tool-scons",
        "version": TOOL_SCONS_VERSION,
        "spec": {"owner": "platformio", "id": None, "name": "tool-scons",
                 "requirements": None, "uri": None},
    }
    (package / ".piopm").write_text(json.dumps(piopm))


def prepare_offline(core_dir: Path | None = None) -> dict[str, str]:
    """Make `pio run` work without the PlatformIO registry, in ``core_dir`` (default: the
    PlatformIO core dir, $PLATFORMIO_CORE_DIR or ~/.platformio). Returns the platformio.ini
    values: ``core_dir``, ``platform`` and ``platform_packages``."""
    core = (core_dir or _default_core_dir()).resolve()
    toolchain = _toolchain_package(core)
    _install_tool_scons(core)
    return {
        "core_dir": str(core),
        "platform": f"symlink://{(boards_dir() / 'platformio').resolve()}",
        "platform_packages": f"toolchain-gccarmnoneeabi@symlink://{toolchain}",
    }


def write_platformio_ini(
    project_dir: Path,
    board: Board,
    offline: dict[str, str] | None = None,
    build_flags: tuple[str, ...] = (),
) -> Path:
    """Write ``project_dir/platformio.ini`` for ``board``; the sources go in ``project_dir/src``.
    ``offline`` is what prepare_offline() returned (it is called when not given)."""
    if board.is_host or board.linker_script is None:
        raise UsageError(f"board '{board.name}' is not a PlatformIO target")
    settings = offline if offline is not None else prepare_offline()
    lines = [
        "; Generated by lego2c. Builds offline with lego2c's own platform and the system",
        "; arm-none-eabi-gcc. With internet access, the official platform also works:",
    ]
    if board.platformio_board:
        lines.append(f";   platform = ststm32, board = {board.platformio_board}, platform_packages removed")
    else:
        lines.append(";   (no official PlatformIO board exists for this one)")
    lines += [
        "",
        "[platformio]",
        f"core_dir = {settings['core_dir']}",
        "",
        f"[env:{board.name}]",
        f"platform = {settings['platform']}",
        f"platform_packages = {settings['platform_packages']}",
        f"board = {board.name}",
    ]
    if build_flags:
        lines.append("build_flags = " + " ".join(build_flags))
    path = project_dir / "platformio.ini"
    path.write_text("\n".join(lines) + "\n")
    return path


def _pio_executable() -> str:
    # Prefer the pio installed alongside this Python (a venv need not be on PATH).
    beside = Path(sys.executable).parent / "pio"
    found = str(beside) if beside.is_file() else shutil.which("pio")
    if found is None:
        raise ToolchainMissingError("PlatformIO ('pio') is not installed", hint=PIO_INSTALL_HINT)
    return found


def pio_build(project_dir: Path) -> Path:
    """Run `pio run` in ``project_dir`` and return the firmware ELF."""
    proc = subprocess.run(
        [_pio_executable(), "run"],
        cwd=project_dir,
        env={**os.environ, **PIO_ENV},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-30:])
        check_fits(output)
        raise LegoError(f"PlatformIO build failed in {project_dir}:\n{tail}")
    elfs = sorted((project_dir / ".pio" / "build").glob("*/firmware.elf"))
    if len(elfs) != 1:
        raise LegoError(f"expected one firmware.elf under {project_dir / '.pio' / 'build'}, found {len(elfs)}")
    return elfs[0]
