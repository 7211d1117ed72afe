"""The install step's native part: CMake builds native/ (the sparse int8 kernel and its OpenVINO extension) into
pruneofa/kernels/. Everything else is declared in pyproject.toml.

The build never fails the install: where CMake, a compiler or OpenVINO's CMake package is missing, the reason is
written to pruneofa/kernels/BUILD_ERROR.txt, and pruneofa runs without the sparse engine, saying why.
PRUNEOFA_SKIP_NATIVE=1 skips the build (the same fallback, on purpose).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).parent.resolve()
LIBRARIES = ("libpruneofa_sparse.so", "libpruneofa_openvino.so")


def openvino_cmake_dir() -> str | None:
    """OpenVINO's CMake package inside the installed (or build-environment) openvino wheel."""
    try:
        import openvino  # the wheel ships include/ and cmake/ beside its Python package
    except ImportError:
        return None
    folder = Path(openvino.__file__).parent / "cmake"
    return str(folder) if (folder / "OpenVINOConfig.cmake").is_file() else None


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        # pruneofa/kernels of the source tree for an editable install, else of the wheel being built.
        editable = getattr(self, "editable_mode", False) or self.inplace
        target = ROOT / "pruneofa" / "kernels" if editable else Path(self.get_ext_fullpath(ext.name)).parent
        target.mkdir(parents=True, exist_ok=True)
        error = target / "BUILD_ERROR.txt"
        error.unlink(missing_ok=True)
        if os.environ.get("PRUNEOFA_SKIP_NATIVE") == "1":
            error.write_text("skipped: PRUNEOFA_SKIP_NATIVE=1 at install time\n")
            return
        try:
            built = self.run_cmake(target)
        except (OSError, subprocess.CalledProcessError) as exc:
            output = (getattr(exc, "stdout", None) or "") + (getattr(exc, "stderr", None) or "")
            reason = f"{type(exc).__name__}: {exc}"
            error.write_text(reason + "\n" + output[-4000:] + "\n")
            print(f"pruneofa: the sparse kernel was not built ({reason}); continuing without it", file=sys.stderr)
            return
        print(f"pruneofa: built {', '.join(built)} into {target}", file=sys.stderr)

    def copy_extensions_to_source(self) -> None:
        pass  # editable builds already wrote into the source tree

    def get_outputs(self) -> list[str]:
        folder = Path(self.build_lib) / "pruneofa" / "kernels"
        return [str(folder / name) for name in (*LIBRARIES, "BUILD_ERROR.txt") if (folder / name).is_file()]

    def run_cmake(self, target: Path) -> list[str]:
        cmake = shutil.which("cmake")
        if cmake is None:
            raise OSError("cmake is not on PATH (install cmake and a C++17 compiler, then reinstall pruneofa)")
        args = [cmake, "-S", str(ROOT / "native"), "-DCMAKE_BUILD_TYPE=Release"]
        if shutil.which("ninja"):
            args += ["-G", "Ninja"]
        ov = openvino_cmake_dir()
        if ov:
            args.append(f"-DOpenVINO_DIR={ov}")
        with tempfile.TemporaryDirectory(prefix="pruneofa-native-") as build:
            for step in ([*args, "-B", build], [cmake, "--build", build, "--parallel"]):
                subprocess.run(step, check=True, capture_output=True, text=True)
            built = []
            for name in LIBRARIES:
                if (Path(build) / name).is_file():
                    shutil.copy2(Path(build) / name, target / name)
                    built.append(name)
        if LIBRARIES[1] not in built:
            (target / "BUILD_ERROR.txt").write_text(
                "OpenVINO extension not built: OpenVINO's CMake package was not found at build time\n"
            )
        return built


setup(
    # A placeholder extension: it gives setuptools a build_ext step (also for editable installs), which CMake does.
    ext_modules=[Extension("pruneofa.kernels._native", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
)
