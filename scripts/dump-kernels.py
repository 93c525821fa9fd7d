#!/usr/bin/env python3
"""Writes the generated code of every end-to-end case into a folder.

For each case of test/Integration/run_case.py that runs (not the error
cases) it writes, with the given attnc:

  CASE/cpu-ref-{f32,f16}.ll      the reference kernel as LLVM IR
  CASE/cpu-tiled-{f32,f16}.ll    the tiled CPU kernel as LLVM IR (this
                                 host's vector width)
  CASE/{sm_80,sm_90}-{f16,bf16}-dD.ptx
                                 the GPU kernel at the case's head dims and
                                 at D = Dv = 64 and 128
  CASE/sm_90-f16-d128-{mma,persistent,nomarks}.ptx,
  CASE/sm_80-f16-d128-nomarks.ptx, CASE/sm_80-f32.ptx
                                 the kernel switches and the SIMT kernel

so that two compilers (say, before and after a change that should not
change the code) can be compared with `diff -r`. A stage that attnc
refuses is recorded as CASE/NAME.error with its message.

Usage: dump-kernels.py --attnc BIN OUT_DIR [CASE|GROUP...]
"""

import argparse
import concurrent.futures
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "test", "Integration"))
import run_case  # noqa: E402


def jobs_of(cs):
    s = cs.sizes
    d, dv = s["D"], s["Dv"]
    out = []
    for dt in ("f32", "f16"):
        out.append(("cpu-ref-%s.ll" % dt, ["--emit=llvm-ir", "--dtype", dt]))
        if max(d, dv) <= 512:
            out.append(("cpu-tiled-%s.ll" % dt,
                        ["--emit=llvm-ir", "--dtype", dt, "--head-dim",
                         str(d), "--value-dim", str(dv)]))
    dims = [(d, dv)] + [(x, x) for x in (64, 128) if (x, x) != (d, dv)]
    for arch in ("sm_80", "sm_90"):
        for dt in ("f16", "bf16"):
            for hd, hv in dims:
                out.append(("%s-%s-d%d-%d.ptx" % (arch, dt, hd, hv),
                            ["--emit=ptx", "--gpu-arch", arch, "--dtype", dt,
                             "--head-dim", str(hd), "--value-dim", str(hv)]))
    d128 = ["--emit=ptx", "--dtype", "f16", "--head-dim", "128"]
    out += [
        ("sm_90-f16-d128-mma.ptx",
         d128 + ["--gpu-arch", "sm_90", "--gpu-kernel", "mma"]),
        ("sm_90-f16-d128-persistent.ptx",
         d128 + ["--gpu-arch", "sm_90", "--gpu-persistent", "on"]),
        ("sm_90-f16-d128-nomarks.ptx",
         d128 + ["--gpu-arch", "sm_90", "--gpu-mark-kernel", "off"]),
        ("sm_80-f16-d128-nomarks.ptx",
         d128 + ["--gpu-arch", "sm_80", "--gpu-mark-kernel", "off"]),
        ("sm_80-f32.ptx",
         ["--emit=ptx", "--gpu-arch", "sm_80", "--dtype", "f32",
          "--head-dim", str(d), "--value-dim", str(dv)]),
    ]
    return out


def emit(attnc, folder, cs, name, args):
    # Relative paths from the case's folder: the LLVM IR names its source.
    cmd = [os.path.abspath(attnc), "source.attn"] + args + ["-o", name]
    if cs.variant:
        cmd += ["--variant", cs.variant]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, errors="replace", cwd=folder)
    if p.returncode != 0:
        if os.path.exists(os.path.join(folder, name)):
            os.remove(os.path.join(folder, name))
        with open(os.path.join(folder, name + ".error"), "w") as f:
            f.write(p.stdout)
        return False
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attnc", required=True)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("out")
    ap.add_argument("cases", nargs="*")
    opts = ap.parse_args()
    work = []
    for n in run_case.select(opts.cases):
        cs = run_case.CASES[n]
        if cs.error:
            continue
        folder = os.path.join(opts.out, n)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "source.attn"), "w") as f:
            f.write(cs.src)
        work += [(folder, cs, name, args) for name, args in jobs_of(cs)]
    with concurrent.futures.ThreadPoolExecutor(opts.jobs) as ex:
        results = list(ex.map(lambda w: emit(opts.attnc, *w), work))
    print("%d files, %d refused (see *.error)" %
          (len(results), results.count(False)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
