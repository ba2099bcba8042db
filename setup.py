# The package is pure Python at install time: kernels are JIT-built per config
# on first use (see README "How the cache works"), so installing takes seconds.
# The CUDA/C++ sources under csrc/ ship inside the package as data so the JIT
# can find them from a wheel as well as from a source checkout.
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildPyWithCsrc(build_py):
    def run(self):
        super().run()
        dst = os.path.join(self.build_lib, "cudadent42", "csrc")
        if os.path.exists(dst):
            shutil.rmtree(dst)
        shutil.copytree(os.path.join(HERE, "csrc"), dst)


setup(cmdclass={"build_py": BuildPyWithCsrc})
