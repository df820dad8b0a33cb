"""Joining a Ray cluster, or starting a local one in-process, for the length of one batch."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import sfumato
from sfumato.errors import UsageError

NAMESPACE = "sfumato"


def import_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise UsageError(
            "sfumato batch needs Ray, which is not installed: pip install 'sfumato[ray]'"
        ) from None
    return ray


@dataclass(frozen=True)
class Cluster:
    ray: ModuleType
    owned: bool  # started (or joined) by this batch, so it is shut down (or left) at the end
    cpus: float
    gpus: float
    memory: float  # bytes Ray may hand out to tasks and actors
    local: bool


def connect(address: str | None, *, local_cpus: int | None = None) -> Cluster:
    """``None``: a private Ray on this machine with ``local_cpus`` CPUs (default: all cores);
    ``auto`` or ``HOST:PORT``: an existing cluster. An already initialised Ray (a caller's own
    ``ray.init``) is used as it is."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = import_ray()
    owned = not ray.is_initialized()
    if owned:
        # Workers import the sfumato this driver runs when its folder exists on their machine
        # (a checkout, a shared install), else their own installed one.
        root = str(Path(sfumato.__file__).resolve().parents[1])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        common = dict(
            namespace=NAMESPACE,
            log_to_driver=False,
            logging_level=logging.ERROR,
            runtime_env={"env_vars": {"PYTHONPATH": path, "RAY_USAGE_STATS_ENABLED": "0"}},
        )
        try:
            if address is None:
                ray.init(address="local", num_cpus=local_cpus, include_dashboard=False, **common)
            else:
                ray.init(address=address, **common)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = "a local Ray" if address is None else f"the Ray cluster at {address}"
            reason = " ".join(str(exc).split())
            if address not in (None, "auto") and not os.environ.get("RAY_AUTH_MODE"):
                reason += (
                    " (a cluster with token authentication, Ray's default, needs RAY_AUTH_MODE=token "
                    "and its token in RAY_AUTH_TOKEN or ~/.ray/auth_token here)"
                )
            raise UsageError(f"could not start or join {where}: {reason}") from None
    resources = ray.cluster_resources()
    return Cluster(
        ray=ray,
        owned=owned,
        cpus=float(resources.get("CPU", 0)),
        gpus=float(resources.get("GPU", 0)),
        memory=float(resources.get("memory", 0)),
        local=address is None,
    )


def disconnect(cluster: Cluster) -> None:
    if cluster.owned:
        cluster.ray.shutdown()
