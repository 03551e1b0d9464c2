"""Rates, latencies and counters of a node, published as diagnostic_msgs/DiagnosticArray.

``NodeDiagnostics`` is thread-safe: subscription callbacks, worker threads and timers may
update it concurrently. Rates are measured over a sliding window of wall-clock (monotonic)
time, so they stay meaningful under simulated time; latencies are in seconds.
"""
import collections
import os
import resource
import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue


def _peak_from_rusage_mb() -> float:
    """Peak resident size of this process (MB) from getrusage (KiB on Linux, bytes on
    macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def resident_memory_mb() -> float:
    """Resident memory of this process now, in MB (2^20 bytes), from /proc/self/statm; where
    that cannot be read (not Linux), the peak resident size from ``resource.getrusage``."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return _peak_from_rusage_mb()


def peak_memory_mb() -> float:
    """Peak resident memory of this process, in MB: VmHWM of /proc/self/status, else
    ``resource.getrusage``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return _peak_from_rusage_mb()


class RateMeter:
    """Events per second over the last ``window_s`` seconds (monotonic clock)."""

    def __init__(self, window_s: float = 5.0, max_events: int = 10_000):
        self._window = float(window_s)
        self._times = collections.deque(maxlen=max_events)

    def tick(self, now: float = None) -> None:
        self._times.append(time.monotonic() if now is None else now)

    def rate(self, now: float = None) -> float:
        now = time.monotonic() if now is None else now
        while self._times and now - self._times[0] > self._window:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        span = max(now - self._times[0], self._times[-1] - self._times[0])
        return (len(self._times) - 1) / span if span > 0 else 0.0


class LatencyStats:
    """Last, mean and max of the latest ``size`` latency samples (seconds)."""

    def __init__(self, size: int = 100):
        self._samples = collections.deque(maxlen=size)

    def add(self, seconds: float) -> None:
        self._samples.append(float(seconds))

    def summary(self):
        if not self._samples:
            return None
        values = list(self._samples)
        return values[-1], sum(values) / len(values), max(values)


class NodeDiagnostics:
    """Collects a node's health figures and turns them into one DiagnosticStatus.

    name: the status name (by convention "<node name>: <what>").
    hardware_id: e.g. the backend that runs the model.
    The level is OK, WARN when ``warn(...)`` was called since the last message (e.g. a bad
    input was dropped), or ERROR when ``error(...)`` was.
    """

    def __init__(self, name: str, hardware_id: str = ""):
        self.name = name
        self.hardware_id = hardware_id
        self._lock = threading.Lock()
        self._rates = collections.OrderedDict()
        self._latencies = collections.OrderedDict()
        self._counters = collections.OrderedDict()
        self._values = collections.OrderedDict()
        self._level = DiagnosticStatus.OK
        self._message = "ok"

    def tick(self, key: str) -> None:
        """One event on the rate meter ``key`` (e.g. "input", "output")."""
        with self._lock:
            self._rates.setdefault(key, RateMeter()).tick()

    def latency(self, key: str, seconds: float) -> None:
        with self._lock:
            self._latencies.setdefault(key, LatencyStats()).add(seconds)

    def count(self, key: str, increment: int = 1) -> None:
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + increment

    def counter(self, key: str) -> int:
        with self._lock:
            return self._counters.get(key, 0)

    def set_value(self, key: str, value) -> None:
        with self._lock:
            self._values[key] = value

    def warn(self, message: str) -> None:
        self._raise_level(DiagnosticStatus.WARN, message)

    def error(self, message: str) -> None:
        self._raise_level(DiagnosticStatus.ERROR, message)

    def _raise_level(self, level, message: str) -> None:
        with self._lock:
            if level >= self._level:
                self._level, self._message = level, message

    def status(self) -> DiagnosticStatus:
        """The current figures; resets the level to OK for the next period."""
        with self._lock:
            values = []
            for key, meter in self._rates.items():
                values.append(KeyValue(key=f"{key} rate (Hz)", value=f"{meter.rate():.2f}"))
            for key, stats in self._latencies.items():
                summary = stats.summary()
                if summary:
                    last, mean, peak = summary
                    values.append(KeyValue(key=f"{key} latency (s)",
                                           value=f"last {last:.3f} mean {mean:.3f} max {peak:.3f}"))
            for key, count in self._counters.items():
                values.append(KeyValue(key=key, value=str(count)))
            for key, value in self._values.items():
                text = f"{value:.3f}" if isinstance(value, float) else str(value)
                values.append(KeyValue(key=key, value=text))
            status = DiagnosticStatus(level=self._level, name=self.name, message=self._message,
                                      hardware_id=self.hardware_id, values=values)
            self._level, self._message = DiagnosticStatus.OK, "ok"
        return status

    def to_message(self, stamp) -> DiagnosticArray:
        """A DiagnosticArray stamped ``stamp`` holding ``status()``."""
        msg = DiagnosticArray(status=[self.status()])
        msg.header.stamp = stamp
        return msg


class LogThrottle:
    """Rate-limits log lines per distinct text: a flood of one error is logged once every
    ``period_s`` seconds, while a different error is logged at once. Thread-safe."""

    def __init__(self, period_s: float = 2.0, max_keys: int = 256):
        self._period = float(period_s)
        self._max_keys = int(max_keys)
        self._last = {}
        self._lock = threading.Lock()

    def should_log(self, text: str) -> bool:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(text)
            if last is not None and now - last < self._period:
                return False
            if len(self._last) >= self._max_keys:
                self._last.clear()
            self._last[text] = now
            return True


class BadInputReporter:
    """``reporter(text)``: a bad input dropped, counted ("bad input") and raised to WARN on a
    node's ``NodeDiagnostics``, and logged as a warning by its ``logger``, each distinct text
    at most once every ``period_s`` seconds (``LogThrottle``)."""

    def __init__(self, diagnostics: NodeDiagnostics, logger, period_s: float = 2.0):
        self.diagnostics = diagnostics
        self.logger = logger
        self._throttle = LogThrottle(period_s)

    def __call__(self, text: str) -> None:
        self.diagnostics.count("bad input")
        self.diagnostics.warn(text)
        if self._throttle.should_log(text):
            self.logger.warn(text)
