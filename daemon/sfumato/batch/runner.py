"""The batch driver: hands files to a pool of actors, retries what a dead worker held, writes the
results and the manifest. It is the only process that writes into DST."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sfumato.batch.actors import BatchTask, CloakWorker, TaskResult, WorkerSetup
from sfumato.batch.cluster import Cluster, connect, disconnect
from sfumato.batch.manifest import Manifest
from sfumato.batch.plan import MANIFEST_NAME, BatchItem, output_names, plan_batch, sha256_of
from sfumato.batch.progress import Counts
from sfumato.errors import EncoderError, SfumatoError, UsageError
from sfumato.fileops import atomic_write_bytes
from sfumato.options import CloakRequest
from sfumato.pipeline import cloak_record

# Files each worker holds at once: one cloaking, one waiting, so it never idles between files.
DEPTH = 2
# Bytes of memory a worker's models and one image take (docs/capacity.md: 1.5-2.3 GB with ViT-B-32): the
# default pool is no larger than the cluster's memory holds.
WORKER_MEMORY = 2e9


@dataclass(frozen=True)
class BatchConfig:
    src: Path
    dst: Path
    options: CloakRequest
    address: str | None = None  # None: a local Ray in-process; "auto" or HOST:PORT: a cluster
    workers: int | None = None  # default: as many as the cluster's CPUs (or GPUs) allow
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    max_attempts: int = 3  # a file whose worker dies is retried on another at most twice
    force: bool = False


def settings_of(options: CloakRequest) -> dict:
    """What a row was cloaked with: a rerun with other settings cloaks the file again."""
    check = options.check
    anchors = options.poison_anchors
    chosen = {
        "style": options.style,
        "intensity": options.intensity,
        "quality": options.quality,
        "encoders": list(options.encoders),
        "seed": options.seed,
        "metadata": options.metadata,
        "poison": None if options.poison is None else str(options.poison),
        "poison_anchors": None if anchors is None else str(anchors),
        "steps": options.steps,
        "check": {"enabled": check.enabled, "encoder": check.encoder, "threshold": check.threshold},
    }
    return json.loads(json.dumps(chosen))


def _portable(options: CloakRequest) -> CloakRequest:
    """Folders named by the options (reference style, poison anchors) as absolute paths, which a
    worker on this machine, or on a cluster sharing the filesystem, can find."""
    style = options.style
    if style not in ("auto", "none") and Path(style).is_dir():
        style = os.path.abspath(style)
    anchors = options.poison_anchors
    anchors = None if anchors is None else Path(os.path.abspath(anchors))
    return dataclasses.replace(options, style=style, poison_anchors=anchors)


class BatchRun:
    def __init__(self, config: BatchConfig, reporter) -> None:
        self.config = config
        self.reporter = reporter
        self.dst = Path(config.dst)
        self.settings = settings_of(config.options)
        self.options = _portable(config.options)

    def run(self) -> Counts:
        items = plan_batch(self.config.src, self.dst)
        with Manifest.open(self.dst, MANIFEST_NAME, force=self.config.force) as manifest:
            self.manifest = manifest
            self.counts = Counts(total=len(items))
            pending = self._not_done(items)
            if pending:  # a rerun with nothing left to do starts no Ray at all
                cluster = connect(self.config.address, local_cpus=self._local_cpus())
                try:
                    self.pool = _Pool(cluster, self.config, self.options)
                    self.reporter.started(self.counts, self.pool.size)
                    self._dispatch(self._tasks(pending))
                finally:
                    disconnect(cluster)
            rows = manifest.rows
            self.counts.not_ok = sum(rows.get(i.rel, {}).get("status") != "ok" for i in items)
        self.reporter.summary(self.counts)
        return self.counts

    def _not_done(self, items: list[BatchItem]) -> list[BatchItem]:
        """Files a row marks done are hashed now, to confirm it; the rest only when handed out."""
        pending = []
        for item in items:
            if item.rel in self.manifest.rows and not item.problem:
                with contextlib.suppress(OSError):
                    sha = sha256_of(item.src.read_bytes())
                    if self.manifest.done(item.rel, sha, self.settings, self.dst):
                        self.counts.skipped += 1
                        continue
            pending.append(item)
        return pending

    def _local_cpus(self) -> int | None:
        if self.config.address is not None or not self.config.workers:
            return None
        needed = math.ceil(self.config.workers * self.config.cpus_per_worker)
        return max(os.cpu_count() or 1, needed)

    def _tasks(self, items: list[BatchItem]) -> Iterator[BatchTask]:
        """Each file's bytes, read and hashed once, lazily: only what is handed out is in memory."""
        for item in items:
            if item.problem:
                self._finish_failed(item.rel, None, item.problem, attempts=0)
                continue
            try:
                data = item.src.read_bytes()
            except OSError as exc:
                reason = f"{item.rel}: cannot be read ({exc.strerror or exc})"
                self._finish_failed(item.rel, None, reason, attempts=0)
                continue
            yield BatchTask(rel=item.rel, sha256=sha256_of(data), data=data)

    def _dispatch(self, tasks: Iterator[BatchTask]) -> None:
        """Keep every ready worker DEPTH files deep; a worker gets files only once its models are
        loaded, so one that cannot be placed (a busy cluster) never holds files back."""
        ray, pool = self.pool.ray, self.pool
        retries: deque[BatchTask] = deque()
        inflight: dict = {}  # ObjectRef -> (task, worker index, actor)
        exhausted = False
        clock_reset = False
        while True:
            for index in pool.free_slots(inflight):
                task = retries.popleft() if retries else None if exhausted else next(tasks, None)
                if task is None:
                    exhausted = True
                    break
                actor = pool.actors[index]
                inflight[actor.cloak.remote(task)] = (task, index, actor)
            if not inflight and exhausted and not retries:
                break  # every file is back
            waiting = [*inflight, *pool.preparing]
            if not waiting:
                raise SfumatoError(
                    "every worker died and no more could be started, so some files were not "
                    "cloaked: run the same command again to finish them"
                )
            ready, _ = ray.wait(waiting, num_returns=1, timeout=1.0)
            for ref in ready:
                if ref in pool.preparing:
                    note = pool.prepared(ref)
                    if note:
                        self.reporter.note(note)
                    elif not clock_reset:  # the rate counts cloaking, not start-up
                        self.counts.started, clock_reset = time.monotonic(), True
                    continue
                task, index, actor = inflight.pop(ref)
                try:
                    result: TaskResult = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:  # a bug in the worker, not its death
                    reason = " ".join(str(exc.cause if exc.cause else exc).split())[:300]
                    self._finish_failed(task.rel, task.sha256, f"{task.rel}: {reason}", task.attempt)
                    continue
                except ray.exceptions.RayError as exc:
                    self._worker_died(index, actor, task, exc, retries)
                    continue
                self._finish(task, result, retries)
            self.reporter.tick(self.counts)

    def _worker_died(self, index: int, actor, task: BatchTask, exc: Exception, retries: deque) -> None:
        if self.pool.retire(index, actor):
            cause = " ".join(str(exc).split())[:200]
            self.reporter.note(f"a worker died ({type(exc).__name__}: {cause})")
        self._retry_or_fail(task, "the worker cloaking it died (killed or out of memory)", retries)

    def _retry_or_fail(self, task: BatchTask, why: str, retries: deque) -> None:
        if task.attempt < self.config.max_attempts:
            self.counts.retried += 1
            attempt, most = task.attempt + 1, self.config.max_attempts
            self.reporter.note(f"{task.rel}: {why}; trying again ({attempt} of {most})")
            retries.append(dataclasses.replace(task, attempt=task.attempt + 1))
        else:
            reason = f"{task.rel}: {why}, {task.attempt} times"
            self._finish_failed(task.rel, task.sha256, reason, task.attempt)

    def _finish(self, task: BatchTask, result: TaskResult, retries: deque) -> None:
        if result.status == "retry":
            self._retry_or_fail(task, result.error or "a transient error", retries)
            return
        if result.status == "failed":
            self._finish_failed(task.rel, task.sha256, result.error, task.attempt, result.worker)
            return
        # The output is in place (temp name, fsync, rename) before its row is written.
        out_rel = str(Path(task.rel).with_name(result.output_name))
        out = self.dst / out_rel
        atomic_write_bytes(out, result.data)
        for other in output_names(task.rel):  # the other name from an earlier, unrecorded try
            if other != out_rel:
                with contextlib.suppress(FileNotFoundError):
                    (self.dst / other).unlink()
        row = cloak_record(Path(self.config.src) / task.rel, out, status=result.status, report=result.report)
        row.update(self._row_keys(task.rel, task.sha256, out_rel, task.attempt, result.worker))
        self.manifest.append(row)
        self.counts.done += 1
        self.counts.incomplete += result.status == "incomplete"
        self.reporter.file(row, self.counts)

    def _finish_failed(
        self, rel: str, sha: str | None, reason: str | None, attempts: int, worker: str | None = None
    ) -> None:
        row = cloak_record(Path(self.config.src) / rel, None, error=reason or f"{rel}: failed")
        row["output"] = None
        row.update(self._row_keys(rel, sha, None, attempts, worker))
        self.manifest.append(row)
        self.counts.failed += 1
        self.reporter.file(row, self.counts)

    def _row_keys(self, rel, sha, out_rel, attempts, worker) -> dict:
        return {
            "path": rel,
            "sha256": sha,
            "output_path": out_rel,
            "attempts": attempts,
            "worker": worker,
            "settings": self.settings,
        }


class _Pool:
    """The workers: actors that each load the models once (``prepare``) before they get files; a
    dead one is replaced while the replacement budget lasts (twice the pool's size)."""

    def __init__(self, cluster: Cluster, config: BatchConfig, options: CloakRequest) -> None:
        self.ray = cluster.ray
        self.config = config
        self.size = self._size(cluster)
        device = options.device
        if device == "auto" and not config.gpus_per_worker:
            device = "cpu"  # GPU workers only when asked for
        threads = options.threads or max(1, math.floor(config.cpus_per_worker))
        self.setup = WorkerSetup(options=options, device=device, threads=threads)
        self.remote = self.ray.remote(CloakWorker)
        self.resources = dict(num_cpus=config.cpus_per_worker, num_gpus=config.gpus_per_worker)
        self.replacements = 2 * self.size
        self.actors: list = [None] * self.size
        self.ready = [False] * self.size
        self.preparing: dict = {}  # prepare() ObjectRef -> (index, actor)
        self.started = 0
        for index in range(self.size):
            self._start(index)

    def _size(self, cluster: Cluster) -> int:
        cpus, gpus = self.config.cpus_per_worker, self.config.gpus_per_worker
        if self.config.workers:
            wanted = self.config.workers
            if cpus * wanted > cluster.cpus or gpus * wanted > cluster.gpus:
                raise UsageError(
                    f"{wanted} workers need {cpus * wanted:g} CPUs and {gpus * wanted:g} GPUs, but the "
                    f"cluster has {cluster.cpus:g} CPUs and {cluster.gpus:g} GPUs: ask for fewer"
                )
            return wanted
        fit = math.floor(cluster.cpus / cpus) if cpus else math.inf
        if gpus:
            fit = min(fit, math.floor(cluster.gpus / gpus))
        if cluster.memory:  # by default, no more workers than the memory holds models for
            fit = min(fit, max(1, math.floor(cluster.memory / WORKER_MEMORY)))
        if not fit or fit == math.inf:
            raise UsageError(
                f"the cluster has {cluster.cpus:g} CPUs and {cluster.gpus:g} GPUs: not enough for one "
                f"worker with {cpus:g} CPUs and {gpus:g} GPUs"
            )
        return int(fit)

    def _start(self, index: int) -> None:
        name = f"sfumato-batch-{os.getpid()}-{self.started}"
        self.started += 1
        # No restarts by Ray: the driver itself replaces a dead worker and retries its files.
        actor = self.remote.options(name=name, max_restarts=0, **self.resources).remote(self.setup)
        self.actors[index], self.ready[index] = actor, False
        self.preparing[actor.prepare.remote()] = (index, actor)

    def prepared(self, ref) -> str | None:
        """A worker's models are loaded (it gets files now), or it died trying (a note to show);
        a problem with the settings themselves (unknown encoder...) ends the batch."""
        index, actor = self.preparing.pop(ref)
        try:
            problem = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            self.retire(index, actor)
            return f"a worker could not start: {' '.join(str(exc).split())[:300]}"
        if problem is not None:
            kind, sentence = problem
            raise (UsageError if kind == "usage" else EncoderError)(sentence)
        if actor is self.actors[index]:
            self.ready[index] = True
        return None

    def free_slots(self, inflight: dict) -> list[int]:
        """Ready workers' indexes, once per free slot."""
        held = [0] * self.size
        for _, index, actor in inflight.values():
            held[index] += actor is self.actors[index]
        return [i for i in range(self.size) if self.ready[i] for _ in range(DEPTH - held[i])]

    def retire(self, index: int, actor) -> bool:
        """Replace a dead worker, once (its other files report the same death); True the first time."""
        if actor is not self.actors[index]:
            return False
        with contextlib.suppress(Exception):
            self.ray.kill(actor, no_restart=True)
        self.actors[index], self.ready[index] = None, False
        if self.replacements > 0:
            self.replacements -= 1
            self._start(index)
        return True


def run_batch(config: BatchConfig, reporter) -> Counts:
    """Cloak ``config.src`` into ``config.dst``; the counts say what happened to the files."""
    return BatchRun(config, reporter).run()
