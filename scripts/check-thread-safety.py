#!/usr/bin/env python3
"""Clang's thread-safety analysis over every Tidal translation unit.

GCC ignores ABSL_GUARDED_BY and friends; this runs clang++ -fsyntax-only
-Wthread-safety -Werror=thread-safety (no code generation, so it is quick)
with the flags of an existing CMake build's compile_commands.json, which
also supplies the generated protobuf headers. Generated code (*.pb.cc) and
third-party code are skipped. Exits 1 naming each file that fails.

usage: check-thread-safety.py BUILD_DIR [-j N] [--only PATH_PART]...
"""
import argparse
import concurrent.futures
import json
import os
import shlex
import shutil
import subprocess
import sys
import time


def clang():
    for name in ("clang++-14", "clang++"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("check-thread-safety: clang++ not found (apt-get install clang-14)")


def command_for(entry, compiler):
    args = entry.get("arguments") or shlex.split(entry["command"])
    # Drop a compiler launcher (ccache) and the compiler itself.
    while args and os.path.basename(args[0]) in ("ccache", "sccache"):
        args = args[1:]
    out = [compiler]
    skip = False
    for a in args[1:]:
        if skip:
            skip = False
            continue
        if a in ("-o", "-MF", "-MT", "-MQ"):
            skip = True
            continue
        if a in ("-c", "-MD", "-MMD") or a.startswith("-fsanitize"):
            continue
        out.append(a)
    out += ["-fsyntax-only", "-Wthread-safety", "-Wthread-safety-beta",
            "-Werror=thread-safety", "-Wno-unknown-warning-option"]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build_dir")
    ap.add_argument("-j", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--only", action="append", default=[],
                    help="check only files whose path contains this")
    opts = ap.parse_args()
    db_path = os.path.join(opts.build_dir, "compile_commands.json")
    with open(db_path) as f:
        db = json.load(f)
    src_root = os.path.dirname(os.path.abspath(__file__)).rsplit("/scripts", 1)[0]
    compiler = clang()
    seen = set()
    jobs = []
    for e in db:
        path = os.path.abspath(os.path.join(e["directory"], e["file"]))
        if path in seen or not path.startswith(src_root + "/"):
            continue
        rel = os.path.relpath(path, src_root)
        if rel.startswith("build") or ".pb." in rel:
            continue
        if opts.only and not any(o in rel for o in opts.only):
            continue
        seen.add(path)
        jobs.append((rel, e["directory"], command_for(e, compiler)))
    jobs.sort()
    start = time.time()
    failed = []

    def run(job):
        rel, cwd, cmd = job
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        return rel, p.returncode, p.stderr

    with concurrent.futures.ThreadPoolExecutor(max_workers=opts.j) as pool:
        for rel, rc, err in pool.map(run, jobs):
            if rc != 0:
                failed.append(rel)
                sys.stderr.write(err)
    took = time.time() - start
    print(f"thread-safety: {len(jobs) - len(failed)} passed, {len(failed)} failed "
          f"({len(jobs)} files, {took:.0f} s)")
    for rel in failed:
        print(f"  FAILED {rel}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
