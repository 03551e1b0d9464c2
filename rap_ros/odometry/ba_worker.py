"""The window bundle adjustment on a worker process, so the tracking keeps a core of its own.

GTSAM's Python bindings hold the GIL while they optimise (measured: a Python loop ran at 2 %
of its rate beside an LM solve on another thread, benchmarks/results/node_latency.md), so a
worker *thread* cannot overlap the BA with the frame path; a worker *process* can. One
process serves every ``VisualOdometry`` of the calling process (started on first use with
the "spawn" method: a clean interpreter, whatever threads ROS or ONNX Runtime run in the
parent). Each odometry gets its own ``WindowBundleAdjuster`` there, keyed by an owner token,
so the solver's factor cache stays per odometry; the worker keeps the ``MAX_SOLVERS`` most
recently used.

A problem (``BAProblem``: a few hundred landmarks and a few thousand observations) and its
result are pickled across: about a millisecond each way.
"""
import itertools
import multiprocessing
import threading
from collections import OrderedDict
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor

from rap_ros.odometry.backend import BAProblem, WindowBundleAdjuster

MAX_SOLVERS = 16

_pool = None
_pool_lock = threading.Lock()
_owners = itertools.count()
_solvers = OrderedDict()  # in the worker: owner token -> WindowBundleAdjuster


def _shared_pool():
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        return _pool


def _drop_pool(pool):
    global _pool
    with _pool_lock:
        if _pool is pool:
            _pool = None


def _solve(owner, settings, problem):
    """Runs in the worker: the owner's solver (created on its first problem) solves."""
    solver = _solvers.pop(owner, None) or WindowBundleAdjuster(**settings)
    _solvers[owner] = solver
    while len(_solvers) > MAX_SOLVERS:
        _solvers.popitem(last=False)
    return solver.solve(problem)


class BAWorker:
    """Submits one odometry's windows to the shared worker process.

    ``settings``: ``WindowBundleAdjuster``'s keyword arguments. ``submit`` returns a
    ``concurrent.futures.Future`` of a ``BAResult``; ``restart`` gives the odometry a fresh
    solver (its keyframe and landmark ids start again after a reset, so the old factor cache
    must not be reused)."""

    def __init__(self, settings):
        self.settings = dict(settings)
        self.restart()

    def restart(self):
        self.owner = next(_owners)

    def recover(self, error):
        """After a submitted solve raised ``error``: a fresh solver, and a fresh process
        next time if the worker died."""
        if isinstance(error, BrokenExecutor):
            _drop_pool(_pool)
        self.restart()

    def submit(self, problem: BAProblem):
        pool = _shared_pool()
        try:
            return pool.submit(_solve, self.owner, self.settings, problem)
        except RuntimeError:  # broken (its process died) or shut down: start a new one
            _drop_pool(pool)
            return _shared_pool().submit(_solve, self.owner, self.settings, problem)
