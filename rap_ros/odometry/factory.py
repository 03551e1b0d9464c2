"""Build the odometry of a method: the one place where the node, `rap-ros evaluate` and the
benchmarks turn a method name into a ``VisualOdometry``.

Methods: "rap" (the core with the joint model as motion prior), "geometry" (the same core
without it). The model's own windowed poses ("model") and the classical baseline
("opencv-vo") are other streams (``rap_ros.pipeline.streaming``, ``rap_ros.evaluation``).
"""
from rap_ros.odometry.config import OdometryConfig
from rap_ros.odometry.core import VisualOdometry
from rap_ros.odometry.prior import ModelPrior
from rap_ros.pipeline.trajectory import TrajectoryPipeline

ODOMETRY_METHODS = ("rap", "geometry")


def make_odometry(method, K=None, backend=None, config=None, samples=1, steps=2, seed=0):
    """A ``VisualOdometry`` for ``method``.

    K: (3, 3) pixels or None (rap: the model estimates it; geometry: a field-of-view guess,
    ``OdometryConfig.default_hfov_deg``). backend: an inference backend (rap only; see
    ``rap_ros.backend.shared.get_backend``). samples: diffusion samples per model window,
    whose spread weighs the model's factors (1: the stated floor). steps, seed: sampling.
    """
    if method not in ODOMETRY_METHODS:
        raise ValueError(f"method must be one of {ODOMETRY_METHODS}, got {method!r}")
    prior = None
    if method == "rap":
        if backend is None:
            raise ValueError("method 'rap' needs the model's backend")
        prior = ModelPrior(TrajectoryPipeline(backend, steps=steps, samples=samples, seed=seed,
                                              refine=False))
    return VisualOdometry(K, config or OdometryConfig(), prior=prior)
