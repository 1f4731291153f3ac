"""The ``her2slide batch`` subcommand and the Dask cluster it runs on.

Serial by default. ``--workers N`` starts a local cluster of N single-threaded worker
processes; ``--gpus-per-node`` starts one worker per GPU (dask-cuda's LocalCUDACluster when
installed, else plain workers each pinned to one GPU through CUDA_VISIBLE_DEVICES);
``--scheduler`` joins a running cluster (e.g. ``dask scheduler`` / ``dask worker`` under
SLURM). Dask and the pipeline are imported only when the command runs. The dashboard of a
cluster the batch starts listens on this machine only (127.0.0.1) unless ``--dashboard``
says otherwise: it shows slide names and lets its viewer see the workers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

from her2slide.cli.options import add_out, add_scoring_options, fail, settings_from_args

#: Dask settings for the clusters a batch starts (and reads while it runs: a restarted worker
#: reads them again). One slide at a time per worker thread: slides are long, queueing more on
#: a worker gains nothing, and a slide queued on a worker that crashes becomes a suspect in
#: that crash. Non-daemonic workers: the CNN engine's DataLoader starts decode processes.
DASK_CONFIG = {"distributed.scheduler.worker-saturation": 1.0, "distributed.worker.daemon": False}


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n), 0 <= i < n: this process takes manifest slides k with k mod n == i."""
    index, sep, count = text.partition("/")
    try:
        shard = (int(index), int(count))
    except ValueError:
        shard = (-1, 0)
    if not sep or not 0 <= shard[0] < shard[1]:
        raise argparse.ArgumentTypeError(f"{text!r}: expected i/n with 0 <= i < n, e.g. 0/4 "
                                         "(SLURM: --array=0-<n-1>)")
    return shard


def _gpus(text: str) -> int | str:
    return text if text == "auto" else _at_least_one(text, "a GPU count >= 1 or 'auto'")


def _positive(text: str) -> int:
    return _at_least_one(text, "a whole number >= 1")


def _at_least_one(text: str, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {expected}")
    return value


def _dashboard(text: str) -> str | None:
    return None if text == "off" else text


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "batch", help="score many slides, resumably; writes DIR/<stem>/ per slide and DIR/summary.csv",
        description="Score the slides of a manifest (CSV: path[, mpp, criteria, roi]) and/or SLIDE paths and "
                    "globs. Finished slides are skipped on a rerun; failed ones are recorded and retried. "
                    "Exit status 0 when every slide is scored or already done, 1 when any failed, "
                    "4 when none failed but some failed QC ('not scored'), 2 when the batch could not start, "
                    "130 when interrupted.")
    p.add_argument("slides", nargs="*", metavar="SLIDE",
                   help="slide paths or quoted globs ('cohort/*.svs'); a .csv file (or a text file whose header "
                        "has a 'path' column) is read as a manifest")
    p.add_argument("--manifest", type=Path, metavar="CSV", help="CSV with a path column; optional mpp, criteria, roi")
    add_out(p)
    add_scoring_options(p)  # --mpp and --criteria are defaults: manifest columns override them per slide
    p.add_argument("--overwrite", action="store_true", help="rescore every slide, even those already done")
    p.add_argument("--shard", type=parse_shard, metavar="I/N",
                   help="score only manifest slides k with k mod N == I (SLURM job arrays)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_positive, metavar="N", help="start a local Dask cluster of N processes")
    where.add_argument("--gpus-per-node", type=_gpus, metavar="N|auto",
                       help="start one Dask worker per GPU of this node ('auto': CUDA_VISIBLE_DEVICES or nvidia-smi)")
    where.add_argument("--scheduler", metavar="ADDRESS|FILE",
                       help="join a running Dask cluster: tcp://node1:8786, or the JSON file of "
                            "`dask scheduler --scheduler-file`")
    p.add_argument("--dashboard", type=_dashboard, default="127.0.0.1:0", metavar="HOST:PORT|off",
                   help="where the dashboard of a cluster the batch starts listens (default 127.0.0.1:0: this "
                        "machine only, any free port; ':8787' for every interface; 'off')")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from her2slide.run.batch import run_batch
    from her2slide.run.batch_jobs import is_manifest, jobs_from_paths, read_manifest
    from her2slide.errors import ExitStatus, InputError

    try:
        settings = settings_from_args(args)
        manifests = ([args.manifest] if args.manifest else []) + [Path(s) for s in args.slides if is_manifest(s)]
        slides = [s for s in args.slides if not is_manifest(s)]
        jobs = [job for manifest in manifests for job in read_manifest(manifest)] + jobs_from_paths(slides)
        if not jobs:
            print("her2slide: batch: no slides given (SLIDE paths, globs or --manifest)", file=sys.stderr)
            return ExitStatus.USAGE
        jobs = [job if job.mpp is not None else replace(job, mpp=args.mpp) for job in jobs]
        with dask_client(args.workers, args.gpus_per_node, args.scheduler, args.dashboard) as client:
            report = run_batch(jobs, args.out, settings, overwrite=args.overwrite, shard=args.shard, client=client)
    except InputError as exc:
        return fail(exc, ExitStatus.USAGE)
    for result in report.failed:
        print(f"her2slide: {result.path}: {result.reason}", file=sys.stderr)
    print(batch_line(report))
    return ExitStatus.FAILED if report.failed else ExitStatus.NOT_SCORED if report.not_scored else ExitStatus.OK


def batch_line(report: Any) -> str:
    """``batch: 3 scored, 1 not scored (QC failed), 2 already done (1 of them not scored), 1 failed -> ...``:
    every slide of this run in exactly one count, and none without a score counted as scored."""
    skipped = report.count("skipped")
    skipped_unscored = sum(1 for r in report.results if r is not None and r.outcome == "skipped" and r.not_scored)
    done = f"{skipped} already done" + (f" ({skipped_unscored} of them not scored)" if skipped_unscored else "")
    return (f"batch: {report.count('scored')} scored, {report.count('not-scored')} not scored (QC failed), {done}, "
            f"{report.count('failed')} failed -> {report.summary_csv}")


def detect_gpus() -> list[str]:
    """GPU ids this process may use, without importing torch.

    CUDA_VISIBLE_DEVICES when set (as a scheduler such as SLURM sets it; ids up to an
    invalid "-1"), else one id per ``nvidia-smi -L`` line; none when neither answers.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [d.strip() for d in visible.split(",") if d.strip()]
        return ids[: ids.index("-1")] if "-1" in ids else ids
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(l for l in listing.splitlines() if l.startswith("GPU "))]


def gpu_ids(request: int | str | None) -> list[str]:
    """The GPUs to put one worker on: detected ones ('auto'), or the first N of them."""
    if request is None:
        return []
    found = detect_gpus()
    if request == "auto":
        return found
    return (found if len(found) >= int(request) else [str(i) for i in range(int(request))])[: int(request)]


@contextmanager
def dask_client(workers: int | None, gpus: int | str | None, scheduler: str | None,
                dashboard: str | None = "127.0.0.1:0") -> Iterator[Any]:
    """A Dask client for the batch, or None to run serially in this process.

    A single GPU needs no cluster: the serial run uses it. ``dashboard``: where the dashboard
    of a cluster started here listens (None: no dashboard).
    """
    ids = gpu_ids(gpus)
    if scheduler is None and workers is None and len(ids) <= 1:
        yield None
        return
    import dask
    from distributed import Client

    if scheduler is not None:
        file = scheduler.endswith(".json") or Path(scheduler).is_file()  # `dask scheduler --scheduler-file`
        with Client(scheduler_file=scheduler) if file else Client(scheduler) as client:
            yield client
        return
    with dask.config.set(DASK_CONFIG):
        cluster = _gpu_cluster(ids, dashboard) if len(ids) > 1 else _cpu_cluster(workers or 1, dashboard)
        with cluster, Client(cluster) as client:
            if dashboard is not None:
                print(f"her2slide: batch: Dask dashboard {client.dashboard_link}", file=sys.stderr)
            yield client


def _cpu_cluster(workers: int, dashboard: str | None) -> Any:
    """Worker processes, one thread each: the pipeline is single-threaded numpy per slide and
    processes keep a crash in a native decoder from taking the other slides with it. The
    scheduler and workers listen on 127.0.0.1 (a local cluster needs no network)."""
    from distributed import LocalCluster

    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                        **_dashboard_options(dashboard))


def _dashboard_options(dashboard: str | None) -> dict[str, Any]:
    """The scheduler's HTTP server (health checks; the dashboard when asked for) on ``dashboard``,
    or on a free port of 127.0.0.1 without the dashboard pages when it is off."""
    return {"dashboard_address": dashboard or "127.0.0.1:0", "scheduler_kwargs": {"dashboard": dashboard is not None}}


def _gpu_cluster(ids: list[str], dashboard: str | None) -> Any:
    """One worker per GPU, each seeing only its own device (set before the worker starts)."""
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:
        from distributed import Nanny, Scheduler, SpecCluster

        share = 1.0 / len(ids)  # of system memory, as LocalCluster gives N workers
        specs = {f"gpu-{gid}": {"cls": Nanny, "options": {"nthreads": 1, "memory_limit": share, "host": "127.0.0.1",
                                                          "env": {"CUDA_VISIBLE_DEVICES": gid}}} for gid in ids}
        options = _dashboard_options(dashboard)
        scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard_address": options["dashboard_address"],
                                                   **options["scheduler_kwargs"]}}
        return SpecCluster(workers=specs, scheduler=scheduler)
    return LocalCUDACluster(CUDA_VISIBLE_DEVICES=",".join(ids), threads_per_worker=1, host="127.0.0.1",
                            **_dashboard_options(dashboard))
