"""Executors that run batch tasks: local processes (concurrent.futures) or dask.distributed.

Each yields one record per task as tasks finish, in completion order. Neither lets one
study's failure, or the death of a worker process, stop the batch.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from screener.batching.tasks import BatchTask
from screener.batching.worker import WorkerSettings, init_worker, run_task

log = logging.getLogger(__name__)


def _executor_failure(task: BatchTask, exc: BaseException, stage: str) -> dict[str, Any]:
    return {"key": task.key, "status": "failed", "report": None, "worker": None,
            "error": {"stage": stage, "error": type(exc).__name__,
                      "message": str(exc)[:300], "where": "executor"}}


def run_inline(tasks: Sequence[BatchTask], settings: WorkerSettings) -> Iterator[dict[str, Any]]:
    """Run every task in this process (workers = 0): for debugging and small evaluations."""
    for task in tasks:
        yield run_task(task, settings)


def run_local(tasks: Sequence[BatchTask], settings: WorkerSettings, workers: int, *,
              start_method: str = "spawn", max_pool_restarts: int = 3) -> Iterator[dict[str, Any]]:
    """Run tasks on `workers` local processes, each loading the model once.

    At most 2 x workers tasks are in flight. If a worker process dies (killed, out of memory),
    the pool is rebuilt and the tasks that were in flight are tried once more, one at a time
    (so a study that kills its worker cannot take a healthy one down with it twice); a task
    that is in flight at a second death is recorded as failed.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    pending = list(reversed(tasks))  # pop() from the end keeps the input order
    retry: list[BatchTask] = []  # in flight at a worker death: rerun in isolation
    attempts: dict[str, int] = {}
    restarts = 0
    ctx = multiprocessing.get_context(start_method)
    while pending or retry:
        broken: list[BatchTask] = []
        pool_broken = False  # a worker died and submit() said so before any future did
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=init_worker,
                                 initargs=(settings.threads_per_worker,)) as pool:
            running: dict[Any, BatchTask] = {}
            while pending or retry or running:
                while retry or pending:
                    isolating = retry or any(attempts[t.key] >= 2 for t in running.values())
                    if len(running) >= (1 if isolating else 2 * workers):
                        break
                    queue = retry if retry else pending
                    task = queue.pop()
                    try:
                        fut = pool.submit(run_task, task, settings)
                    except BrokenProcessPool:
                        queue.append(task)  # never started: back where it came from
                        pool_broken = True
                        break
                    attempts[task.key] = attempts.get(task.key, 0) + 1
                    running[fut] = task
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    task = running.pop(fut)
                    try:
                        yield fut.result()
                    except BrokenProcessPool as exc:
                        if attempts[task.key] >= 2 or restarts >= max_pool_restarts:
                            yield _executor_failure(task, exc, "worker_died")
                        else:
                            broken.append(task)
                    except Exception as exc:  # noqa: BLE001 - e.g. a result that cannot be pickled
                        yield _executor_failure(task, exc, "executor")
                if broken or pool_broken:
                    break
            if broken or pool_broken:
                # The pool is unusable: everything still running fails the same way.
                for fut, task in running.items():
                    if fut.done() and fut.exception() is None:
                        yield fut.result()
                    else:
                        broken.append(task)
        if broken or pool_broken:
            restarts += 1
            log.warning("a worker process died; restarting the pool (%d) and retrying %d task(s)",
                        restarts, len(broken))
            retry.extend(reversed(broken))


def run_dask(tasks: Sequence[BatchTask], settings: WorkerSettings, *,
             scheduler: str | None = None, n_workers: int = 1, retries: int = 1,
             connect_timeout_s: float = 30.0) -> Iterator[dict[str, Any]]:
    """Run tasks on dask.distributed: an existing scheduler, or a LocalCluster on 127.0.0.1.

    The workers must see OUTDIR and the inputs at the same paths (shared filesystem) and be
    able to import screener. The model is loaded once per worker process (worker-side cache).
    """
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        client = Client(scheduler, timeout=connect_timeout_s)
    else:
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None)
        client = Client(cluster)
    try:
        run_id = uuid.uuid4().hex[:8]
        futures = {}
        for task in tasks:
            fut = client.submit(run_task, task, settings, key=f"screen-{task.key}-{run_id}",
                                pure=False, retries=retries)
            futures[fut.key] = (fut, task)
        for fut in as_completed([f for f, _ in futures.values()]):
            task = futures[fut.key][1]
            try:
                yield fut.result()
            except Exception as exc:  # noqa: BLE001 - KilledWorker, lost connection ...
                yield _executor_failure(task, exc, "dask")
            fut.release()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
