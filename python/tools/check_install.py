#!/usr/bin/env python3
"""Checks the documented install command end to end, offline.

In a temporary folder: makes a virtual environment (with the system's
site-packages, for NumPy), runs `python -m pip install --no-index ./python`
with ATTNC_LIBRARY naming the libattn to bundle, then, from another folder
and with neither ATTNC_LIBRARY nor PYTHONPATH set, imports the installed
package, checks that it loaded the bundled library, runs the ALiBi example
against its float64 reference, uninstalls the package and checks that it
is gone. Exits 0 on success, 1 on a failure, 77 (skipped) when this
Python cannot make a virtual environment with pip (Debian: python3-venv).

    python3 python/tools/check_install.py --library build/lib/libattn.so
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_DIR = os.path.dirname(HERE)                    # python/
ROOT = os.path.dirname(PACKAGE_DIR)
SKIP = 77


def run(cmd, env, cwd, what):
    print("+ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=600)
    print(r.stdout, end="", flush=True)
    if r.returncode != 0:
        raise SystemExit("FAIL: %s (exit %d)" % (what, r.returncode))
    return r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", required=True, help="the libattn.so to bundle")
    a = ap.parse_args()
    library = os.path.abspath(a.library)
    tmp = tempfile.mkdtemp(prefix="attnc-install-")
    try:
        venv = os.path.join(tmp, "venv")
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "ATTNC_LIBRARY", "PIP_INDEX_URL")}
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        made = subprocess.run([sys.executable, "-m", "venv",
                               "--system-site-packages", venv],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=600)
        python = os.path.join(venv, "bin", "python")
        if made.returncode != 0 or not os.path.exists(python):
            print(made.stdout)
            print("skipped: %s cannot make a virtual environment with pip "
                  "(on Debian: apt-get install python3-venv)" % sys.executable)
            return SKIP
        build_env = dict(env, ATTNC_LIBRARY=library)
        run([python, "-m", "pip", "install", "--no-index", "--no-cache-dir",
             PACKAGE_DIR], build_env, tmp, "pip install ./python")
        out = run([python, "-c",
                   "import attnc, sys; print(attnc.__file__); "
                   "print(attnc.library_path()); print(attnc.version())"],
                  env, tmp, "import attnc")
        where, lib_path = out.splitlines()[:2]
        if not where.startswith(venv) or not lib_path.startswith(venv):
            raise SystemExit("FAIL: the installed package should load its own "
                             "library from the environment, got %s and %s"
                             % (where, lib_path))
        run([python, os.path.join(ROOT, "examples", "python", "alibi.py")],
            env, tmp, "the ALiBi example")
        run([python, "-m", "pip", "uninstall", "-y", "attnc"], env, tmp,
            "pip uninstall attnc")
        gone = subprocess.run([python, "-c", "import attnc"], env=env, cwd=tmp,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if gone.returncode == 0:
            raise SystemExit("FAIL: attnc still imports after pip uninstall")
        print("install check passed")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
