"""The trajectory_estimator's method "model": the model's own windowed poses.

``ModelWindows`` holds the ``rap_ros.pipeline.streaming.WindowStream`` (windows of the model's
T frames, one every ``window_stride`` frames, chained into one trajectory) over a
``TrajectoryPipeline``, and the optional closed-loop consistency check (``ViewPipeline``).
The node admits frames to ``stream`` from its subscription and takes and chains windows
under its lock (the stream is not thread-safe); the worker thread runs the model
(``stream.estimate``, ``consistency``) outside it. Poses come out as the stream's: camera to
world, OpenCV optical axes, the first window's scale.
"""
from rap_ros.nodes.params import ParameterError
from rap_ros.pipeline.streaming import WindowStream
from rap_ros.pipeline.trajectory import TrajectoryPipeline
from rap_ros.pipeline.views import ViewPipeline


class ModelWindows:
    """Windows of the ``backend``'s model. ``model``: the node's model parameters (steps,
    sampler, seed); ``consistency_every``: check every N-th window's poses closed-loop (0:
    never). ParameterError when ``stride`` is not in [1, T - 1]."""

    def __init__(self, backend, model, *, samples, refine, stride, frame_interval,
                 consistency_every):
        length = int(backend.config.frames)
        if not 1 <= stride < length:
            raise ParameterError(
                f"parameter 'window_stride' is {stride}; the model's window has "
                f"{length} frames, so it must be in [1, {length - 1}]")
        self.length = length
        pipeline = TrajectoryPipeline(backend, steps=model["steps"], sampler=model["sampler"],
                                      samples=samples, seed=model["seed"], refine=refine)
        self.view_pipeline = (ViewPipeline(backend, steps=model["steps"],
                                           sampler=model["sampler"], seed=model["seed"],
                                           estimator=pipeline)
                              if consistency_every else None)
        self.consistency_every = consistency_every
        self.stream = WindowStream(pipeline, stride=stride, frame_interval=frame_interval,
                                   keep_history=False)
        self.windows = 0  # windows estimated

    def held(self, busy):
        """Frames held: those buffered, and a whole window while the worker is ``busy``."""
        return self.stream.buffered + (self.length if busy else 0)

    def consistency(self, window, estimate):
        """Count one estimated window; on every consistency_every-th, the closed-loop PSNR (dB)
        of its first frame under its estimate (3 model jobs), else None."""
        self.windows += 1
        if self.view_pipeline is None or self.windows % self.consistency_every:
            return None
        return self.view_pipeline.closed_loop(window.frames[0], estimate.K, estimate.c2w).psnr
