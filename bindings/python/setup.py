"""Builds mailers._mailers with the project's own CMake build.

The extension is the C++ library linked statically into one module, so the
installed package needs no libmailers.so beside it. Nothing is downloaded:
CMake finds the library's dependencies and pybind11 on the system (Debian's
packages; see scripts/install-deps). MAILERS_SOURCE_DIR names the source
tree when this folder is not inside it; MAILERS_BUILD_JOBS the parallel
build jobs (default 2).
"""

import os
import pathlib
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = pathlib.Path(__file__).resolve().parent


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        source = pathlib.Path(os.environ.get("MAILERS_SOURCE_DIR", HERE.parent.parent)).resolve()
        if not (source / "include" / "mailers" / "engine.hpp").exists():
            sys.exit(f"mailers sources not found at {source}; set MAILERS_SOURCE_DIR")
        build = pathlib.Path(self.build_temp).resolve() / "cmake"
        subprocess.check_call([
            "cmake", "-S", str(source), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
            "-DBUILD_SHARED_LIBS=OFF", "-DMAILERS_BUILD_PYTHON=ON", "-DMAILERS_BUILD_TESTS=OFF",
            "-DMAILERS_BUILD_EXAMPLES=OFF", "-DMAILERS_BUILD_BENCHMARKS=OFF",
            "-DMAILERS_BUILD_TOOLS=OFF", f"-DPython_EXECUTABLE={sys.executable}"])
        subprocess.check_call(["cmake", "--build", str(build), "--target", "_mailers", "-j",
                               os.environ.get("MAILERS_BUILD_JOBS", "2")])
        built = next((build / "bindings" / "python" / "mailers").glob("_mailers*.so"))
        target = pathlib.Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, target)


setup(ext_modules=[Extension("mailers._mailers", sources=[])], cmdclass={"build_ext": CMakeBuild})
