#!/usr/bin/env python3
"""Runs the workspace's test binaries, two at a time, longest first.

`cargo test` runs one test binary after the other. Most of ours are end-to-end tests
that spend their time waiting for real media (a publisher's segments, a browser's
frames), so on a 2-core machine two of them side by side take little more than one.
This builds exactly what `cargo test --workspace --all-targets --locked` builds, then
runs each test binary the way cargo would (its package directory as the working
directory, the same CARGO_* variables), `--jobs` at a time, the slowest known first
(durations of the previous run are kept beside the build, in the target directory).
Each binary's output is printed whole when it ends; the run fails if any binary fails,
after all have run.

    scripts/run-tests.py [--jobs N] [--only TEXT] [-- ARGS FOR EVERY TEST BINARY]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def build(extra_cargo_args, package_names):
    """Builds the test binaries; returns [(name, executable, package_dir, package)]."""
    cmd = ["cargo", "test", "--workspace", "--all-targets", "--locked", "--no-run",
           "--message-format=json-render-diagnostics", *extra_cargo_args]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    binaries = []
    for line in proc.stdout.splitlines():
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
            continue
        if not msg.get("profile", {}).get("test"):
            continue
        target = msg["target"]
        manifest = Path(msg["manifest_path"])
        package = package_names.get(str(manifest), manifest.parent.name)
        kind = target["kind"][0]
        name = f"{package}/{kind}/{target['name']}"
        binaries.append((name, msg["executable"], manifest.parent, package))
    if proc.returncode != 0:
        sys.exit(f"cargo test --no-run failed (exit {proc.returncode})")
    return binaries


def metadata():
    """The target directory, and each workspace manifest's package name."""
    out = subprocess.run(["cargo", "metadata", "--format-version=1", "--no-deps"],
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    meta = json.loads(out)
    names = {p["manifest_path"]: p["name"] for p in meta["packages"]}
    return Path(meta["target_directory"]), names


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int,
                        default=int(os.environ.get("RIVULET_TEST_JOBS", "2")),
                        help="test binaries at once (RIVULET_TEST_JOBS, default 2)")
    parser.add_argument("--only", action="append", default=[], metavar="TEXT",
                        help="run only the binaries whose name (PACKAGE/KIND/TARGET) "
                             "contains TEXT; repeatable")
    parser.add_argument("test_args", nargs="*", help="arguments for every test binary")
    args = parser.parse_args()

    target, package_names = metadata()
    binaries = build([], package_names)
    if args.only:
        binaries = [b for b in binaries if any(text in b[0] for text in args.only)]
    durations_file = target / "rivulet-test-durations.json"
    try:
        known = json.loads(durations_file.read_text())
    except (OSError, ValueError):
        known = {}
    # Unknown binaries first among equals: an end-to-end test is usually long.
    binaries.sort(key=lambda b: known.get(b[0], 60.0), reverse=True)

    queue = list(binaries)
    lock = threading.Lock()
    results = {}
    cargo = os.environ.get("CARGO", "cargo")
    logs = Path(tempfile.mkdtemp(prefix="rivulet-tests."))

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                name, exe, cwd, package = queue.pop(0)
            env = dict(os.environ, CARGO=cargo, CARGO_MANIFEST_DIR=str(cwd),
                       CARGO_PKG_NAME=package)
            log = logs / (name.replace("/", "_") + ".log")
            start = time.monotonic()
            with open(log, "w") as out:
                status = subprocess.run([exe, *args.test_args], cwd=cwd, env=env,
                                        stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT).returncode
            seconds = time.monotonic() - start
            with lock:
                results[name] = (status, seconds)
                verdict = "ok" if status == 0 else f"FAILED (exit {status})"
                print(f"\n==== {name}: {verdict} in {seconds:.1f} s ({exe})", flush=True)
                sys.stdout.write(log.read_text(errors="replace"))
                sys.stdout.flush()

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(max(1, args.jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    try:
        known.update({name: round(s, 1) for name, (_, s) in results.items()})
        durations_file.write_text(json.dumps(known, indent=1, sort_keys=True))
    except OSError:
        pass  # only an ordering hint
    failed = sorted(n for n, (status, _) in results.items() if status != 0)
    total = time.monotonic() - started
    busy = sum(s for _, s in results.values())
    print(f"\n{len(results)} test binaries in {total:.0f} s with {args.jobs} at a time "
          f"({busy:.0f} s one after the other)")
    if failed:
        print(f"FAILED: {', '.join(failed)} (logs in {logs})")
        sys.exit(1)
    shutil.rmtree(logs, ignore_errors=True)


if __name__ == "__main__":
    main()
