"""The attnc package's build backend (PEP 517 and PEP 660), in this folder
and using the standard library only, so that

    python3 -m pip install ./python

works offline, with no setuptools, wheel or network, under any pip that
builds in place (21.3+). The wheel holds the pure-Python package and a copy
of the libattn.so found at ``$ATTNC_LIBRARY`` or, by default, at
``../build/lib/libattn.so`` (the checkout's build folder; run
``ninja -C build libattn`` first). It is tagged ``py3-none-linux_<arch>``:
it runs under any CPython 3.8+ of this platform, and the library needs the
same system libraries (LLVM 22's libLLVM) as the build that made it.

An editable install (``pip install -e ./python``) puts this folder on the
path instead and bundles nothing: the package then finds the library as it
does from a checkout (``$ATTNC_LIBRARY``, else ``../build/lib``).

Also a command: ``python3 python/attnc_build.py [--library PATH] OUT_DIR``
writes the wheel into OUT_DIR and prints its path.
"""

import base64
import hashlib
import os
import platform
import sys
import zipfile

NAME = "attnc"
HERE = os.path.dirname(os.path.abspath(__file__))


def _version():
    with open(os.path.join(HERE, NAME, "__init__.py"), encoding="utf-8") as f:
        for line in f:
            if line.startswith("__version__"):
                return line.split("=", 1)[1].strip().strip("\"'")
    raise RuntimeError("attnc/__init__.py has no __version__")


VERSION = _version()
DIST_INFO = "%s-%s.dist-info" % (NAME, VERSION)

METADATA = """Metadata-Version: 2.1
Name: {name}
Version: {version}
Summary: Attention variants in the .attn language, compiled by attnc and called on NumPy arrays and PyTorch tensors
Requires-Python: >=3.8
License: see the attnc repository
Description-Content-Type: text/markdown

A ctypes binding of libattn (attnc's runtime). NumPy is needed for NumPy
arrays, PyTorch (2.4+ for torch.compile) for tensors; neither is a hard
dependency. See docs/python.md in the attnc repository.
"""


def _platform_tag():
    machine = platform.machine().lower().replace("-", "_") or "x86_64"
    return "linux_" + machine


def _library(config_settings=None):
    path = (config_settings or {}).get("library") or os.environ.get("ATTNC_LIBRARY") \
        or os.path.join(os.path.dirname(HERE), "build", "lib", "libattn.so")
    if not os.path.exists(path):
        raise RuntimeError(
            "attnc: no libattn.so at %s. Build it first (cmake -S . -B build "
            "-G Ninja && ninja -C build libattn), or set ATTNC_LIBRARY to the "
            "libattn.so to bundle." % path)
    return os.path.realpath(path)


def _package_files():
    """(path in the wheel, path on disk) of the package's sources."""
    files = []
    pkg = os.path.join(HERE, NAME)
    for name in sorted(os.listdir(pkg)):
        if name.endswith(".py") or name == "py.typed":
            files.append(("%s/%s" % (NAME, name), os.path.join(pkg, name)))
    return files


class _Wheel:
    def __init__(self, path):
        self.zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED)
        self.records = []

    def add(self, arcname, data):
        info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
        info.external_attr = (0o755 if arcname.endswith(".so") else 0o644) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        self.zip.writestr(info, data, compresslevel=1)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest())
        self.records.append("%s,sha256=%s,%d" % (
            arcname, digest.rstrip(b"=").decode(), len(data)))

    def close(self, tag):
        self.add(DIST_INFO + "/METADATA",
                 METADATA.format(name=NAME, version=VERSION).encode())
        self.add(DIST_INFO + "/WHEEL", (
            "Wheel-Version: 1.0\nGenerator: attnc_build\n"
            "Root-Is-Purelib: false\nTag: %s\n" % tag).encode())
        record = DIST_INFO + "/RECORD"
        self.records.append(record + ",,")
        self.zip.writestr(zipfile.ZipInfo(record, date_time=(2020, 1, 1, 0, 0, 0)),
                          "\n".join(self.records) + "\n")
        self.zip.close()


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    """PEP 517: the package with libattn.so bundled in attnc/_lib/."""
    library = _library(config_settings)
    tag = "py3-none-" + _platform_tag()
    name = "%s-%s-%s.whl" % (NAME, VERSION, tag)
    wheel = _Wheel(os.path.join(wheel_directory, name))
    for arcname, path in _package_files():
        wheel.add(arcname, _read(path))
    wheel.add(NAME + "/_lib/libattn.so", _read(library))
    wheel.close(tag)
    return name


def build_editable(wheel_directory, config_settings=None,
                   metadata_directory=None):
    """PEP 660: a .pth file that puts this folder on sys.path."""
    tag = "py3-none-any"
    name = "%s-%s-%s.whl" % (NAME, VERSION, tag)
    wheel = _Wheel(os.path.join(wheel_directory, name))
    wheel.add("__editable___%s.pth" % NAME, (HERE + "\n").encode())
    wheel.close(tag)
    return name


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description="Writes the attnc wheel.")
    ap.add_argument("out_dir")
    ap.add_argument("--library", help="the libattn.so to bundle (default: "
                    "$ATTNC_LIBRARY, else ../build/lib/libattn.so)")
    a = ap.parse_args(argv)
    os.makedirs(a.out_dir, exist_ok=True)
    name = build_wheel(a.out_dir, {"library": a.library} if a.library else None)
    print(os.path.join(a.out_dir, name))


if __name__ == "__main__":
    main(sys.argv[1:])
