"""``archive index``: plan the archive (or list its sources again and grow the plan), then
describe its unfinished shards on Ray.

Ray does the distribution (no scheduler of our own): Ray Data turns the unfinished shard
numbers into one block each and ``map_batches`` sends them to a pool of
:class:`engine.archive.describe.ShardDescriber` actors, one per worker, each with
``num_cpus`` CPUs (and ``num_gpus`` GPUs). Without ``ray_address`` a local Ray instance is
started on this machine (the embedded default: it runs wherever Ray installs) and stopped at
the end; with one, the driver joins that cluster and ships this checkout's ``engine``
package to its workers (``runtime_env`` ``py_modules``), so every node describes with the same
code. Every worker must read the photos and the archive folder at the paths the driver
sees (shared storage).

Why shard numbers and not ``read_binary_files``: a shard is the unit that is committed,
skipped by a rerun and lost when a worker dies, so a worker must own a whole shard; and the
worker reads each file through the desktop indexer's decode (which checks the file did not
change while it was read), which works on paths, not on bytes Ray read earlier.

When a worker process dies (killed, out of memory, its machine lost) Ray restarts the actor
and runs its shard again; the shard's half-done work is lost, nothing else. When the driver
dies, a rerun skips every finished shard. A rerun first lists the sources again
(:func:`engine.archive.plan.grow_plan`): photos added since are planned as new shards and
described with the unfinished ones; ``relist=False`` (``--no-relist``) continues the recorded
plan without listing (a resumed run of an archive whose listing takes hours).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from engine.archive.describe import ShardDescriber, archive_method
from engine.archive.layout import ArchiveInfo, ArchiveLayout
from engine.archive.plan import grow_plan, plan_archive
from engine.descriptors.methods import DEFAULT_METHOD, create_method
from engine.errors import LookalikeError
from engine.indexing.indexer import IndexProgress, _decode, available_cores
from engine.store.atomic import atomic_write_bytes
from engine.store.integrity import digest, npz_bytes

log = logging.getLogger(__name__)

# The embedded instance only passes shard numbers and one summary row per shard through its
# object store: a small store leaves the machine's memory to the workers' models.
EMBEDDED_OBJECT_STORE_BYTES = 256 * 2**20


@dataclass
class ArchiveIndexReport:
    """One ``archive index`` run: ``skipped`` shards were finished before it, ``described``
    in it; ``photos`` / ``failed`` are this run's. ``planned``: photos this run planned (all of
    a new archive's; a rerun's new ones, in ``new_shards`` shards); ``relisting``: what listing
    the sources again found (:class:`engine.archive.plan.Relisting`), None when this run made
    the first plan or did not list. ``startup_s``: Ray started (or joined) and
    the pipeline set up; ``describe_s``: from then to the last shard back, the workers'
    own start (importing torch, loading the model) included; ``images_per_s``: files handled
    (described or failed) over ``describe_s``."""

    archive: str
    ray: str
    workers: int
    shards: int
    skipped: int
    planned: int = 0
    new_shards: int = 0
    relisting: dict[str, Any] | None = None
    described: int = 0
    photos: int = 0
    failed: int = 0
    startup_s: float = 0.0
    describe_s: float = 0.0
    seconds: float = 0.0
    images_per_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in dataclasses.asdict(self).items()}


def index_archive(out: str | os.PathLike, sources: list[str] | None = None, method: str | None = None,
                  overrides: dict[str, Any] | None = None, weights: str | None = None,
                  shard_size: int | None = None, ray_address: str | None = None, workers: int | None = None,
                  cpus_per_worker: int = 1, gpus_per_worker: float = 0,
                  progress: Callable[[IndexProgress], None] | None = None,
                  emit: Callable[[str], None] = lambda message: None, relist: bool = True) -> ArchiveIndexReport:
    """Plan the archive at ``out`` (or continue its plan, first growing it by the photos its
    sources hold now unless ``relist`` is False) and describe its unfinished shards."""
    t0 = time.monotonic()
    if cpus_per_worker < 1 or gpus_per_worker < 0 or (workers is not None and workers < 1):
        raise LookalikeError("--cpus-per-worker and --workers must be at least 1, --gpus-per-worker at least 0.")
    layout = ArchiveLayout(out)
    with layout.lock():
        recorded = layout.read_info() if layout.is_archive() else None
        asked = None
        if method or overrides or recorded is None:
            asked = create_method(method or (recorded.method if recorded else DEFAULT_METHOD), overrides)
        info = plan_archive(layout, list(sources or []), asked, weights, shard_size, emit)
        relisting = None
        if recorded is None:
            planned, new_shards = info.files, info.shards
        elif relist:
            info, relisting = grow_plan(layout, info, emit)
            planned, new_shards = relisting.new, relisting.new_shards
        else:
            planned, new_shards = 0, 0
        info = _prepared(layout, info, gpus_per_worker, emit)
        finished = layout.finished_shards(info.shards)
        layout.drop_stale_claims(finished)
        todo = [s for s in range(info.shards) if s not in finished]
        report = ArchiveIndexReport(str(layout.dir), ray_address or "embedded", 0, info.shards, len(finished),
                                    planned, new_shards, relisting.to_json() if relisting else None)
        if todo:
            emit(f"{len(finished)} of {info.shards} shards already finished; describing {len(todo)}")
            _describe_on_ray(layout, info, todo, report, ray_address, workers, cpus_per_worker, gpus_per_worker,
                             progress or (lambda p: None))
    report.seconds = time.monotonic() - t0
    return report


def _prepared(layout: ArchiveLayout, info: ArchiveInfo, gpus: float, emit) -> ArchiveInfo:
    """For methods that prepare on a sample (cluster-MAC's PCA): prepare once here, before
    any shard, and record it, so every worker describes with the same state."""
    method = create_method(info.method, info.config)
    if method.prepare_sample_size <= 0 or info.prepared is not None:
        return info
    from engine.nn.features import FeatureExtractor

    emit(f"preparing {method.name} on {method.prepare_sample_size} sample photos")
    # The plans of up to 50 shards spread over the archive: a sample without reading every plan.
    files = [f for s in range(0, info.shards, max(1, info.shards // 50)) for f in layout.read_plan(s)]
    step = max(1, len(files) // method.prepare_sample_size)
    images = []
    for f in files[::step]:
        d = _decode(f, 0, method.decode_side())
        if d.image is not None:
            images.append(d.image)
        if len(images) >= method.prepare_sample_size:
            break
    if not images:
        raise LookalikeError("None of the sample photos could be decoded to prepare the method.")
    extractor = FeatureExtractor(method.config.backbone, "cuda" if gpus else "cpu", info.weights)
    data = npz_bytes(method.prepare(images, extractor))
    atomic_write_bytes(layout.prepare_path, lambda f: f.write(data))
    info = dataclasses.replace(info, prepared=digest(data))
    layout.write_info(info)
    return info


@contextmanager
def ray_session(address: str | None) -> Iterator[str]:
    """Ray for this run: the instance already started in this process (kept running), the
    cluster at ``address``, or a local instance on this machine (stopped at the end)."""
    try:
        import ray
    except ImportError:
        raise LookalikeError("Archive indexing needs Ray: pip install 'lookalike[archive]' (ray[data]).") from None
    if ray.is_initialized():
        yield "this process's Ray instance"
        return
    try:
        if address:
            engine_dir = str(Path(__file__).resolve().parents[1])
            ray.init(address=address, runtime_env={"py_modules": [engine_dir]}, logging_level=logging.WARNING)
        else:
            ray.init(num_cpus=available_cores(), include_dashboard=False, logging_level=logging.WARNING,
                     object_store_memory=EMBEDDED_OBJECT_STORE_BYTES)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise LookalikeError(f"Could not start or reach {where}: {exc}") from None
    try:
        yield address or "embedded"
    finally:
        ray.shutdown()


def _pool_size(ray, workers: int | None, cpus: int, gpus: float) -> int:
    if workers:
        return workers
    resources = ray.cluster_resources()
    by_cpu = int(resources.get("CPU", 1) // cpus)
    by_gpu = int(resources.get("GPU", 0) // gpus) if gpus else by_cpu
    if by_gpu < 1:
        raise LookalikeError(f"The Ray cluster has {resources.get('GPU', 0):g} GPUs; --gpus-per-worker {gpus:g} "
                             f"needs at least that many per worker.")
    return max(1, min(by_cpu, by_gpu))


def _describe_on_ray(layout: ArchiveLayout, info: ArchiveInfo, todo: list[int], report: ArchiveIndexReport,
                     address: str | None, workers: int | None, cpus: int, gpus: float,
                     progress: Callable[[IndexProgress], None]) -> None:
    archive_method(layout, info)  # a damaged prepared state is reported here, not by every worker
    started = time.monotonic()
    with ray_session(address) as where:
        import ray
        import ray.data

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the CLI's own bar counts photos
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        report.ray = where
        report.workers = _pool_size(ray, workers, cpus, gpus)
        decode_threads = max(1, cpus - 1) if gpus else 1
        ds = ray.data.from_items([{"shard": s} for s in todo], override_num_blocks=len(todo))
        ds = ds.map_batches(ShardDescriber, batch_size=1, num_cpus=cpus, num_gpus=gpus or None,
                            compute=ray.data.ActorPoolStrategy(size=report.workers),
                            fn_constructor_kwargs={"archive_dir": str(layout.dir), "device": "cuda" if gpus else "cpu",
                                                   "threads": 1 if gpus else cpus, "decode_threads": decode_threads})
        report.startup_s = time.monotonic() - started
        total = sum(layout.planned_count(info, s) for s in todo)
        _collect(ds, report, total, progress)
    report.describe_s = time.monotonic() - started - report.startup_s
    handled = report.photos + report.failed
    report.images_per_s = handled / report.describe_s if report.describe_s > 0 else 0.0


def _collect(ds, report: ArchiveIndexReport, total: int, progress: Callable[[IndexProgress], None]) -> None:
    """Count the shards as their summaries come back; a shard that raised ends the run with
    its error (the finished shards are kept: a rerun continues)."""
    t0 = time.monotonic()
    try:
        for row in ds.iter_rows():
            report.described += 1
            report.photos += int(row["photos"])
            report.failed += int(row["failed"])
            done = report.photos + report.failed
            rate = done / max(time.monotonic() - t0, 1e-9)
            progress(IndexProgress("indexing", done, total, report.failed, rate, (total - done) / rate if rate else None,
                                   f"shard {int(row['shard']):05d} on {row['host']}"))
    except LookalikeError:
        raise
    except Exception as exc:  # Ray wraps a worker's exception in its own types
        raise LookalikeError(f"A shard failed on a Ray worker ({_root_message(exc)}); "
                             f"{report.skipped + report.described} shards are finished and kept, "
                             f"rerun the same command to continue.") from exc


def _root_message(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"
