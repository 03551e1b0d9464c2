"""The trajectory_estimator's method "model": the model's own windowed poses.

``ModelWindows`` holds the ``rap_ros.pipeline.streaming.WindowStream`` (windows of the model's
T frames, one every ``window_stride`` frames, chained into one trajectory) over a
``TrajectoryPipeline``, and the optional closed-loop consistency check (``ViewPipeline``).
The node admits frames (``stream.screen``, then ``add``) from its subscription under its lock
(the stream is not thread-safe); the worker thread takes full windows (``stream.take``) and
runs ``process``: the model (``stream.estimate``, ``consistency``) outside the lock, the
chaining and the publishing (``TrajectoryOutput.windows``, and the estimated intrinsics
when no camera_info came) under it. Poses come out as the stream's: camera to world, OpenCV
optical axes, the first window's scale.
"""
import time

from rap_ros.nodes.params import ParameterError
from rap_ros.pipeline.streaming import WindowStream
from rap_ros.pipeline.trajectory import TrajectoryPipeline
from rap_ros.pipeline.views import ViewPipeline


class ModelWindows:
    """Windows of the ``backend``'s model (see the module docstring).

    ``settings``: the node's ``EstimatorSettings`` (model, samples, refine, window_stride,
    frame_interval, consistency_every: check every N-th window's poses closed-loop, 0 never);
    ``lock``: the node's lock; ``mount``, ``output``,
    ``diagnostics``, ``logger``: the node's ``CameraMount``, ``TrajectoryOutput``,
    ``NodeDiagnostics`` and logger. Callbacks into the node, called under its lock:
    ``request_reset(reason)`` forgets the published run, ``publish_intrinsics(K, width,
    height, stamp, camera_frame)`` publishes the intrinsics in use. ParameterError when
    ``window_stride`` is not in [1, T - 1].
    """

    def __init__(self, settings, backend, *, lock, mount, output, diagnostics, logger,
                 publish_intrinsics, request_reset):
        length = int(backend.config.frames)
        stride, model = settings.window_stride, settings.model
        if not 1 <= stride < length:
            raise ParameterError(
                f"parameter 'window_stride' is {stride}; the model's window has "
                f"{length} frames, so it must be in [1, {length - 1}]")
        self.length = length
        self._lock, self.mount, self.output = lock, mount, output
        self.diagnostics, self.logger = diagnostics, logger
        self.publish_intrinsics, self.request_reset = publish_intrinsics, request_reset
        pipeline = TrajectoryPipeline(backend, steps=model["steps"], sampler=model["sampler"],
                                      samples=settings.samples, seed=model["seed"],
                                      refine=settings.refine)
        self.consistency_every = settings.consistency_every
        self.view_pipeline = (ViewPipeline(backend, steps=model["steps"],
                                           sampler=model["sampler"], seed=model["seed"],
                                           estimator=pipeline)
                              if self.consistency_every else None)
        self.stream = WindowStream(pipeline, stride=stride,
                                   frame_interval=settings.frame_interval, keep_history=False)
        self.windows = 0  # windows estimated

    def held(self, busy):
        """Frames held: those buffered, and a whole window while the worker is ``busy``."""
        return self.stream.buffered + (self.length if busy else 0)

    def add(self, rgb, seconds, stamp, check=True):
        """Give the stream one frame at ``seconds`` -> whether it was taken (refusals are
        counted; a time jump resets the trajectory). ``check`` False: an unstamped frame,
        ``seconds`` the node's clock, which passes no stamp check (``WindowStream.add``).
        Caller holds the lock."""
        admission = self.stream.add(rgb, seconds, stamp, check=check)
        if admission.reset:
            self.logger.warn(f"{admission.detail}: resetting the trajectory")
            self.request_reset(admission.reset)
        if not admission.taken:
            self.diagnostics.count(admission.reason)
            return False
        self.diagnostics.tick("accepted")
        return True

    def consistency(self, window, estimate):
        """Count one estimated window; on every consistency_every-th, the closed-loop PSNR (dB)
        of its first frame under its estimate (3 model jobs), else None."""
        self.windows += 1
        if self.view_pipeline is None or self.windows % self.consistency_every:
            return None
        return self.view_pipeline.closed_loop(window.frames[0], estimate.K, estimate.c2w).psnr

    def process(self, windows):
        """The worker's job: estimate the taken ``windows`` (outside the lock), chain them
        and publish the fixed poses (under it)."""
        start = time.perf_counter()
        estimates = self.stream.estimate(windows)
        latency = time.perf_counter() - start
        window, estimate = windows[-1], estimates[-1]
        consistency = self.consistency(window, estimate)
        height, width = window.frames.shape[1:3]
        with self._lock:
            fixed = self.stream.chain(windows, estimates)
            if fixed is None:
                self.diagnostics.count("windows discarded (reset)")
                return
            camera_frame = self.mount.camera_frame_of("")
            T_base_camera = self.mount.lookup(camera_frame, float(window.stamps[-1]))
            if T_base_camera is None:
                T_base_camera = self.mount.T_base_camera_parameters
            self.output.windows(fixed, self.mount.child_frame(camera_frame), T_base_camera)
            self.diagnostics.set_value("trajectory frames", int(self.stream.frames_fixed))
            if window.K is None:
                self.publish_intrinsics(estimate.K, width, height, fixed.tags[-1],
                                        camera_frame)
        self.diagnostics.latency("window", latency)
        self.diagnostics.count("windows")
        if consistency is not None:
            self.diagnostics.set_value("closed-loop consistency (dB)", float(consistency))
