"""Images per hour of ``sfumato batch`` on Ray (one worker, two) beside sequential ``sfumato cloak``.

The shared Van Gogh paintings (512×512) at ``fast`` with ``effnet-lite:0`` toward ``pixelart``,
the quick check on (the defaults a user gets), in one run, on the same files and the same CPU
threads: ``cloak --threads T``; ``batch --workers 1 --cpus-per-worker T``; ``batch --workers 2
--cpus-per-worker T/2``. Each is the real command in its own process, so the wall time includes
what a user waits for: Python, model loads, and for ``batch`` the start of a local Ray.

``end-to-end`` is images over wall time; ``steady`` leaves start-up out: (images − 1) over the
time from the first finished image to the last (each command prints one JSON line per image as it
finishes). Ray's overhead is one worker's rate against ``cloak``'s.

    python bench/batch.py [--limit N] [--threads 2] [--configs cloak,batch1,batch2[,gpu1]]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, print_table, vangogh_images

CLOAK = ["--quality", "fast", "--encoder", "effnet-lite:0", "--style", "pixelart"]


def commands(config: str, src: Path, out: Path, threads: int) -> list[str]:
    sfumato = [sys.executable, "-m", "sfumato"]
    if config == "cloak":
        return [*sfumato, "cloak", str(src), "-o", str(out), "--threads", str(threads), "--json", *CLOAK]
    if config == "gpu1":  # one GPU worker (a machine with a CUDA GPU)
        pool = ["--workers", "1", "--cpus-per-worker", str(threads), "--gpus-per-worker", "1"]
    else:
        workers = {"batch1": 1, "batch2": 2}[config]
        pool = ["--workers", str(workers), "--cpus-per-worker", f"{threads / workers:g}"]
    return [*sfumato, "batch", str(src), str(out), *pool, "--json", *CLOAK]


def measure(cmd: list[str]) -> dict:
    """Wall time of the command and the time each image's JSON line arrived."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "daemon"), "RAY_USAGE_STATS_ENABLED": "0"}
    started = time.monotonic()
    finished, statuses = [], []
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        for line in proc.stdout:
            record = json.loads(line)
            if "input" in record:
                finished.append(time.monotonic() - started)
                statuses.append(record["status"])
        err = proc.stderr.read()
    wall = time.monotonic() - started
    if proc.returncode not in (0, 1) or not finished:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err}")
    return {"wall": wall, "finished": finished, "statuses": statuses}


def rates(m: dict) -> tuple[float, float | None]:
    n = len(m["finished"])
    end_to_end = n / m["wall"] * 3600
    span = m["finished"][-1] - m["finished"][0]
    return end_to_end, ((n - 1) / span * 3600 if n > 1 and span > 0 else None)


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configs", default="cloak,batch1,batch2")
    args = parser.parse_args()
    images = vangogh_images(args.limit)
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(f"commit {commit}, {len(images)} images, {os.cpu_count()} CPUs, load {load()} at start", flush=True)
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for path in images:
            shutil.copyfile(path, src / path.name)
        for config in args.configs.split(","):
            out = Path(tmp) / f"out-{config}"
            before = load()
            m = measure(commands(config, src, out, args.threads))
            results[config] = m
            e2e, steady = rates(m)
            label = {
                "cloak": f"sequential `sfumato cloak --threads {args.threads}`",
                "batch1": f"`sfumato batch`, 1 worker × {args.threads} threads",
                "batch2": f"`sfumato batch`, 2 workers × {args.threads / 2:g} thread(s)",
                "gpu1": "`sfumato batch`, 1 GPU worker",
            }[config]
            ok = sum(s == "ok" for s in m["statuses"])
            rows.append(
                [
                    label,
                    f"{len(m['finished'])} ({ok} ok)",
                    f"{m['wall']:.0f}",
                    f"{e2e:.0f}",
                    "—" if steady is None else f"{steady:.0f}",
                    f"{before} / {load()}",
                ]
            )
            print(" | ".join(rows[-1]), flush=True)
    if "cloak" in results and "batch1" in results:
        (c_e2e, c_steady), (b_e2e, b_steady) = rates(results["cloak"]), rates(results["batch1"])
        print(f"\nRay's overhead at one worker: end-to-end {100 * (1 - b_e2e / c_e2e):.1f} %", end="")
        if c_steady and b_steady:
            print(f", steady {100 * (1 - b_steady / c_steady):.1f} %")
    print()
    headers = ["configuration", "images", "wall s", "images/h end-to-end", "images/h steady"]
    print_table([*headers, "load before / after"], rows)


if __name__ == "__main__":
    main()
