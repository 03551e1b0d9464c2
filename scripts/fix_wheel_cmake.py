"""Point the PyPI ROS 2 wheels' exported CMake targets at this interpreter's headers.

The wheels were built on another machine, and their exported `*Export.cmake` files
name that machine's Python and NumPy include directories. Building a new interface
package against them (rosidl_generator_py) then fails to find Python.h. This rewrites
those paths, in place, to the running interpreter's own. Idempotent.

Usage: python scripts/fix_wheel_cmake.py PREFIX
"""
import pathlib
import re
import sys
import sysconfig

import numpy


def main(prefix: str) -> int:
    python_include = sysconfig.get_paths()["include"]
    numpy_include = numpy.get_include()
    python_dir = re.compile(r"/[^;\"\s]*?/include/python3\.\d+")
    numpy_dir = re.compile(r"/[^;\"\s]*?/site-packages/numpy/(?:_?core/)?include")
    changed = 0
    for path in pathlib.Path(prefix, "share").glob("*/cmake/*Export.cmake"):
        text = path.read_text()
        new = numpy_dir.sub(numpy_include, python_dir.sub(python_include, text))
        if new != text:
            path.write_text(new)
            changed += 1
    print(f"fix_wheel_cmake: rewrote include paths in {changed} file(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
