"""``sfumato status [--json]``: what the daemon is doing, read from its ledger (read-only).

Works while the daemon runs (SQLite WAL lets readers in) and says so when it never ran.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from sfumato.config import load_config
from sfumato.config_file import config_path
from sfumato.errors import SfumatoError
from sfumato.jobs import describe_ensemble
from sfumato.ledger import LEDGER_NAME, Job, JobState, LedgerReader

RECENT = 5


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "status",
        help="show what the daemon is doing and has done",
        description="Folders watched, files waiting, the current job, recent results, totals.",
    )
    parser.add_argument("--config", metavar="PATH", help="config file (to find the ledger)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def collect(state_dir: Path, configured: list[dict[str, Any]]) -> dict[str, Any]:
    """The status as plain data (what ``--json`` prints)."""
    ledger = LedgerReader.open(state_dir)
    report: dict[str, Any] = {"ledger": str(state_dir / LEDGER_NAME), "ever_ran": ledger is not None}
    if ledger is None:
        report.update(daemon={"running": False}, folders=configured, waiting=0, current=[])
        report.update(last_done=[], last_failed=[])
        return report
    try:
        meta = ledger.meta()
        pid = int(meta["pid"]) if meta.get("pid") else None
        report["daemon"] = {
            "running": bool(pid and _alive(pid)),
            "pid": pid,
            "started_at": float(meta["started_at"]) if meta.get("started_at") else None,
            "config": meta.get("config"),
        }
        folders = {f["outbox"]: dict(f) for f in configured}
        if not configured and meta.get("folders"):
            folders = {f["outbox"]: f for f in json.loads(meta["folders"])}
        totals: dict[str, dict[str, int]] = {}
        for count in ledger.state_counts():
            totals.setdefault(count.folder, {})[count.state.value] = count.count
        targets = ledger.folder_targets()
        for key in totals.keys() | targets.keys():
            folders.setdefault(key, {"outbox": key, "configured": False})
        paused = json.loads(meta.get("paused") or "{}") if report["daemon"]["running"] else {}
        for key, folder in folders.items():
            folder["totals"] = {s.value: totals.get(key, {}).get(s.value, 0) for s in JobState}
            folder["target"] = targets.get(key)
            folder["paused"] = paused.get(key)
        report["folders"] = list(folders.values())
        report["waiting"] = sum(f["totals"]["waiting"] for f in folders.values())
        report["current"] = [
            {
                "file": str(job.source),
                "progress": job.progress,
                "started_at": job.started_at,
                "attempt": job.attempts,
            }
            for job in ledger.working()
        ]
        report["last_done"] = [
            {
                "file": str(job.source),
                "output": job.output,
                "original": job.original_to,
                "seconds": job.seconds,
                "psnr": job.psnr,
                "target": job.target,
                **_ensemble(job),
                "finished_at": job.finished_at,
            }
            for job in ledger.latest(JobState.DONE, RECENT)
        ]
        report["last_failed"] = [
            {
                "file": str(job.source),
                "moved_to": job.original_to,
                "error": job.error,
                "finished_at": job.finished_at,
            }
            for job in ledger.latest(JobState.FAILED, RECENT)
        ]
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):  # else: the daemon is creating it right now
            raise SfumatoError(f"cannot read the ledger {report['ledger']}: {exc}") from None
        report.update(folders=configured, waiting=0, current=[], last_done=[], last_failed=[])
        report.setdefault("daemon", {"running": False})
    except sqlite3.Error as exc:
        raise SfumatoError(f"cannot read the ledger {report['ledger']}: {exc}") from None
    finally:
        ledger.close()
    return report


def _ensemble(job: Job) -> dict[str, list[str] | None]:
    """The members a cloak used and left out (None: not recorded, as by older daemons)."""
    ensemble = json.loads(job.encoders) if job.encoders else {}
    return {"encoders": ensemble.get("used"), "left_out": ensemble.get("left_out")}


def _ago(timestamp: float | None) -> str:
    if not timestamp:
        return ""
    seconds = max(0, time.time() - timestamp)
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def render(report: dict[str, Any]) -> str:
    lines = []
    if not report["ever_ran"]:
        lines.append(f"The daemon has not run yet (no ledger at {report['ledger']}).")
        lines.append("Start it with: sfumato run")
    else:
        d = report["daemon"]
        lines.append(f"Daemon: running (pid {d['pid']})" if d["running"] else "Daemon: not running")
    lines.append("Folders:")
    for f in report["folders"]:
        line = f"  {f['outbox']}"
        if f.get("ready"):
            line += f" -> {f['ready']}"
        if f.get("configured") is False:
            line += " (no longer configured)"
        lines.append(line)
        if "totals" in f:
            t = f["totals"]
            counts = ", ".join(f"{n} {s}" for s, n in t.items() if n)
            target = f"; target {f['target']}" if f["target"] else ""
            lines.append(f"    {counts or 'nothing yet'}{target}")
        if f.get("paused"):
            lines.append(f"    paused: {f['paused']}")
    if not report["folders"]:
        lines.append("  none configured")
    lines.append(f"Waiting: {report['waiting']}")
    for job in report["current"]:
        lines.append(f"Now: {job['file']} ({job['progress'] * 100:.0f}%)")
    if report["last_done"]:
        lines.append("Last done:")
        for r in report["last_done"]:
            psnr = f", PSNR {r['psnr']:.1f} dB" if r["psnr"] is not None else ""
            if r.get("encoders"):
                psnr += ", " + describe_ensemble({"used": r["encoders"], "left_out": r["left_out"]})
            lines.append(f"  {r['file']} -> {r['output']}{psnr} ({_ago(r['finished_at'])})")
    if report["last_failed"]:
        lines.append("Last failed:")
        for r in report["last_failed"]:
            lines.append(f"  {r['file']}: {r['error']} ({_ago(r['finished_at'])})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    explicit = bool(args.config or os.environ.get("SFUMATO_CONFIG"))
    config = load_config(path if (explicit or path.exists()) else None)
    roles = ("ready", "originals", "failed")
    configured = [
        {"outbox": f.key, **{role: str(getattr(f, role)) for role in roles}} for f in config.folders
    ]
    report = collect(config.daemon.state_dir, configured)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0
