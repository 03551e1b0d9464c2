"""The trajectory_estimator's images as the trackers take them: downscaled, undistorted, with K.

``CameraInput`` keeps the latest camera_info calibration (``rap_ros.io.messages``
``camera_info_calibration``: K, or P for rectified images, and the distortion) as a
``rap_ros.geometry.undistort.Undistorter`` and applies it to each decoded image: images above
``max_image_pixels`` are downscaled first (intrinsics with them), then the distortion is
removed, as ``rap-ros evaluate`` does. Images are (H, W, 3) uint8 rgb; K is the (3, 3) pinhole
intrinsics of the returned image in pixels (OpenCV camera axes), or None without a usable
camera_info. Sizes are (width, height).
"""
from rap_ros.geometry.undistort import SUPPORTED_MODELS, Undistorter
from rap_ros.io.images import limit_image_size


class CameraInput:
    """The calibration in use and the images through it. ``lock``: the node's lock, under
    which the calibration is replaced and read; ``diagnostics``: where downscaled images and
    unusable calibrations are reported."""

    def __init__(self, lock, diagnostics, *, max_image_pixels):
        self._lock = lock
        self.diagnostics = diagnostics
        self.max_image_pixels = max_image_pixels
        self._undistorter = None  # Undistorter of the latest camera_info

    def calibrate(self, K, size, model, d):
        """Use camera_info's calibration (intrinsics K of images of ``size``, distortion
        ``model`` and coefficients ``d``) -> True when it differs from the one in use.
        Caller holds the lock."""
        if self._undistorter is not None and self._undistorter.matches(K, size, model, d):
            return False
        self._undistorter = Undistorter(K, size, model, d)
        if self._undistorter.note and model not in SUPPORTED_MODELS:
            self.diagnostics.warn(self._undistorter.note)
        return True

    def prepare(self, rgb):
        """A decoded image -> (rgb, its recorded size, K or None): downscaled to
        max_image_pixels (counted), then undistorted."""
        recorded_size = rgb.shape[1::-1]
        rgb, downscaled = limit_image_size(rgb, self.max_image_pixels)
        if downscaled:
            self.diagnostics.count("images downscaled (max_image_pixels)")
        rgb, K = self.undistort(rgb, recorded_size)
        return rgb, recorded_size, K

    def undistort(self, rgb, recorded_size):
        """Remove lens distortion with the latest camera_info -> (rgb, K or None); K is None
        without camera_info or when it is for another image size."""
        with self._lock:
            undistorter = self._undistorter
        if undistorter is None:
            return rgb, None
        rgb, K = undistorter(rgb, recorded_size)
        if K is None:
            self.diagnostics.warn(f"camera_info is for {undistorter.size[0]}x"
                                  f"{undistorter.size[1]} images, the images are "
                                  f"{recorded_size[0]}x{recorded_size[1]}: intrinsics not used")
        return rgb, K
