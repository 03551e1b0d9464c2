"""Camera frame admission: one path from a recorded image to the pinhole image and K that the
estimators take, shared by the nodes and `rap-ros evaluate` (no ROS imports).

``CameraFrames`` holds one camera's calibration (from a sensor_msgs/CameraInfo through
``rap_ros.io.messages.camera_info_calibration``, or given as K, size, model, d) and admits
each decoded image:

1. an image of more than ``max_image_pixels`` pixels is downscaled
   (``rap_ros.io.images.limit_image_size``: area interpolation, aspect kept) and counted;
2. raw images (``rectified=False``) are undistorted with camera_info's K and D (plumb_bob,
   rational_polynomial, equidistant: ``rap_ros.geometry.undistort.Undistorter``); rectified
   images (``rectified=True``, an ``image_rect`` topic) take the left 3x3 of camera_info's P
   and are not remapped.

Images are (H, W, 3) uint8 RGB; K is (3, 3) in pixels, OpenCV camera axes, for the admitted
image (after the downscaling and the undistortion); sizes are (width, height). The
trajectory_estimator (``nodes.camera_input``), the view_predictor
(``nodes.predictor_inputs``) and the evaluator (``evaluation.inputs``) all admit through it,
so the same camera gives the same images and K live and offline.
"""
from dataclasses import dataclass

import numpy as np

from rap_ros.geometry.undistort import SUPPORTED_MODELS, Undistorter
from rap_ros.io.images import limit_image_size, limited_size
from rap_ros.io.messages import camera_info_calibration

# Images with more pixels are downscaled on arrival: the trajectory_estimator's
# ``max_image_pixels`` parameter and `rap-ros evaluate --max-image-pixels` default to it.
DEFAULT_MAX_IMAGE_PIXELS = 1280 * 1024


@dataclass
class AdmittedFrame:
    """One admitted image: rgb (H, W, 3) uint8, recorded_size (width, height) as decoded, K
    (3, 3) of ``rgb`` or None (no calibration, or one for another image size), downscaled:
    whether it was over max_image_pixels."""

    rgb: np.ndarray
    recorded_size: tuple
    K: np.ndarray
    downscaled: bool


class CameraFrames:
    """One camera's calibration and its images through it.

    max_image_pixels: the largest H * W admitted as is (None or 0: no limit); rectified: the
    images are rectified (P, no undistortion) rather than raw (K and D). ``downscaled`` counts
    the images downscaled so far. A calibration is replaced by assigning one reference, and
    each admission reads it once, so a calibration may arrive on another thread.
    """

    def __init__(self, *, max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS, rectified=False):
        self.max_image_pixels = max_image_pixels
        self.rectified = bool(rectified)
        self.downscaled = 0
        self._undistorter = None  # Undistorter of the calibration in use

    @property
    def calibration(self):
        """The ``Undistorter`` in use (K, size, model, d, note), or None."""
        return self._undistorter

    def calibrate_from_info(self, msg):
        """Use a sensor_msgs/CameraInfo (K and D, or P when rectified) -> True when it
        differs from the calibration in use. Raises ValueError for an unusable one."""
        return self.calibrate(*camera_info_calibration(msg, self.rectified))

    def calibrate(self, K, size, model="", d=()):
        """Use intrinsics K of images of ``size`` (width, height), distortion ``model`` and
        coefficients ``d`` -> True when they differ from the calibration in use."""
        d = np.asarray(d, dtype=np.float64)
        current = self._undistorter
        if current is not None and current.matches(K, size, model, d):
            return False
        self._undistorter = Undistorter(K, size, model, d)
        return True

    @property
    def unsupported_note(self):
        """The calibration's note when its distortion model is not supported (images used as
        they are), else None."""
        undistorter = self._undistorter
        if undistorter is None or undistorter.model in SUPPORTED_MODELS:
            return None
        return undistorter.note

    def admitted_size(self, recorded_size):
        """(width, height) of the admitted images of a recorded (width, height)."""
        return limited_size(int(recorded_size[0]), int(recorded_size[1]),
                            self.max_image_pixels)

    def admitted_K(self, recorded_size=None):
        """K of the admitted images of a recorded size (default: the calibrated one), or None
        without a calibration or for another size."""
        undistorter = self._undistorter
        if undistorter is None:
            return None
        recorded_size = undistorter.size if recorded_size is None else tuple(recorded_size)
        if recorded_size != undistorter.size:
            return None
        return undistorter.K_for(*self.admitted_size(recorded_size))

    def admit(self, rgb):
        """A decoded image -> AdmittedFrame: downscaled to max_image_pixels (counted), then
        undistorted (raw images) with the calibration in use."""
        recorded_size = (rgb.shape[1], rgb.shape[0])
        rgb, downscaled = limit_image_size(rgb, self.max_image_pixels)
        if downscaled:
            self.downscaled += 1
        rgb, K = self.undistort(rgb, recorded_size)
        return AdmittedFrame(rgb, recorded_size, K, downscaled)

    def undistort(self, rgb, recorded_size):
        """Undistort an image recorded at ``recorded_size`` (and maybe downscaled since) ->
        (rgb, K or None); K is None without a calibration or when it is for another size."""
        undistorter = self._undistorter
        if undistorter is None:
            return rgb, None
        return undistorter(rgb, recorded_size)
