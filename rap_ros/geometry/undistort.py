"""Lens distortion removal for the distortion models of sensor_msgs/CameraInfo.

``undistortion(K, d, model, width, height)`` gives the OpenCV remap tables that turn a
distorted image into a pinhole image of the same size and the intrinsics of that image, so
that everything downstream keeps the pinhole conventions of ``geometry.cameras``. The nodes and
`rap-ros evaluate` both undistort through it, by way of ``rap_ros.io.camera_frames``.
"""
import cv2
import numpy as np

# OpenCV's radial-tangential models, and the Kannala-Brandt fisheye model (cv2.fisheye).
SUPPORTED_MODELS = ("plumb_bob", "rational_polynomial", "equidistant")


def undistortion(K, d, model, width, height):
    """Remap tables for one camera -> (maps or None, K of the undistorted images, note or None).

    K: (3, 3) intrinsics in pixels; d: distortion coefficients of ``model``; width, height:
    image size in pixels. The undistorted images keep the size; their intrinsics are chosen
    so that every output pixel sees the recorded image (OpenCV's optimal new camera matrix
    with alpha = 0, balance = 0 for fisheye): no black border that a feature tracker would
    take for static texture. Returns (``(map_x, map_y)`` float32 (height, width) for
    ``cv2.remap``, the new K, a note for the report); (None, K, None) when there is nothing
    to undo; (None, K, note) for a model this does not support (images used as they are).
    """
    K = np.asarray(K, dtype=np.float64)
    d = np.asarray(d, dtype=np.float64)
    if not d.size or not np.any(d != 0):
        return None, K, None
    if model not in SUPPORTED_MODELS:
        return None, K, f"distortion model {model!r} not supported: images used as they are"
    size = (int(width), int(height))
    if model == "equidistant":
        coefficients = np.zeros(4)
        coefficients[:min(4, d.size)] = d[:4]
        K_new = cv2.fisheye.estimateNewCameraMatrixForUndistortRectify(
            K, coefficients, size, np.eye(3), balance=0.0)
        maps = cv2.fisheye.initUndistortRectifyMap(K, coefficients, np.eye(3), K_new, size,
                                                   cv2.CV_32FC1)
    else:
        K_new, _ = cv2.getOptimalNewCameraMatrix(K, d, size, 0.0, size)
        maps = cv2.initUndistortRectifyMap(K, d, None, K_new, size, cv2.CV_32FC1)
    return maps, np.asarray(K_new, dtype=np.float64), f"{model} distortion removed (cv2.remap)"


def undistort(image, maps):
    """Apply ``undistortion``'s tables to an image (H, W, C) (bilinear)."""
    return cv2.remap(image, *maps, cv2.INTER_LINEAR)


class Undistorter:
    """One camera_info's calibration, applied to that camera's images at any size.

    Built from the calibrated intrinsics K (3, 3, pixels), image size (width, height), model
    and coefficients d. Distortion acts on normalised image coordinates, so an image resized
    from the calibrated size by (sx, sy) is undone with K scaled by (sx, sy) (pixel-centre
    offsets of half a source pixel are ignored, as in the node's downscaling). The remap
    tables are computed once per image size; a node sees one or two sizes.
    """

    def __init__(self, K, size, model, d):
        self.K = np.asarray(K, dtype=np.float64)
        self.size = (int(size[0]), int(size[1]))
        self.model = model
        self.d = np.asarray(d, dtype=np.float64)
        self.note = undistortion(self.K, self.d, model, *self.size)[2]
        self._tables = {}                     # (width, height) -> (maps or None, K)

    def matches(self, K, size, model, d):
        """True when (K, size, model, d) is this calibration (a repeated camera_info)."""
        return (np.array_equal(self.K, K) and self.size == tuple(size) and self.model == model
                and np.array_equal(self.d, d))

    def __call__(self, image, recorded_size):
        """Undistort ``image`` (H, W, C), recorded at ``recorded_size`` (width, height) and
        possibly resized since -> (pinhole image, its K), or (image, None) when the image
        was not recorded at the calibrated size (the calibration does not apply)."""
        if tuple(recorded_size) != self.size:
            return image, None
        height, width = image.shape[:2]
        maps, K_new = self._table(width, height)
        return (image if maps is None else undistort(image, maps)), K_new

    def K_for(self, width, height):
        """K (3, 3) of this camera's images once resized to width x height and undistorted
        (what ``__call__`` returns with them), without an image."""
        return self._table(int(width), int(height))[1]

    def _table(self, width, height):
        if (width, height) not in self._tables:
            scaled = np.diag([width / self.size[0], height / self.size[1], 1.0]) @ self.K
            maps, K_new, _ = undistortion(scaled, self.d, self.model, width, height)
            self._tables[(width, height)] = (maps, K_new)
        return self._tables[(width, height)]
