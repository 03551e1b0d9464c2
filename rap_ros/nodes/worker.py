"""A node's worker thread: one job at a time, taken from the node's inputs under its lock.

Subscription callbacks only queue work and ``notify`` (so a SingleThreadedExecutor serves
them, ``rap_ros.nodes.runner``); the worker takes a job under the node's lock and runs it
outside it. A job that raises is reported and the worker goes on, so a bad frame never stops
the node.
"""
import threading


class WorkerThread:
    """A daemon thread named ``name`` serving the jobs guarded by ``lock`` (the node's).

    ``has_work()`` and ``take_work()`` run under ``lock``; ``process(job)`` outside it;
    ``on_error(error)`` gets what ``process`` raised. ``busy`` (read under ``lock``) is True
    while a job runs.
    """

    WAIT_S = 0.5  # the longest wait between checks for a job or a stop

    def __init__(self, lock, *, has_work, take_work, process, on_error, name):
        self._lock = lock
        self._wake = threading.Condition(lock)
        self._has_work, self._take_work = has_work, take_work
        self._process, self._on_error = process, on_error
        self._stopping = False
        self.busy = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self):
        self._thread.start()

    def notify(self):
        """Wake the worker for new work; the caller holds the lock."""
        self._wake.notify()

    def stop(self, timeout=30.0):
        """Let the job in progress finish (at most ``timeout`` s) and end the thread."""
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=timeout)

    def _loop(self):
        while True:
            with self._lock:
                while not self._stopping and not self._has_work():
                    self._wake.wait(timeout=self.WAIT_S)
                if self._stopping:
                    return
                job = self._take_work()
                self.busy = True
            try:
                self._process(job)
            except Exception as error:  # keep the node alive; report and go on
                self._on_error(error)
            finally:
                with self._lock:
                    self.busy = False
