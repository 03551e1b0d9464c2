"""Image helpers shared by the message decoder and the file readers (no ROS imports).

Out: uint8 RGB (H, W, 3), the images of every edge of rap_ros (or uint8 grey (H, W)).
"""
import math

import cv2
import numpy as np


def decoded_to_rgb8(image):
    """An image as OpenCV decodes it (BGR, BGRA or grey; 8 or 16 bit) -> uint8 RGB (H, W, 3).
    16-bit values keep their 8 most significant bits."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=-1)
    if image.shape[2] == 4:
        image = image[..., :3]
    return np.ascontiguousarray(image[..., ::-1])


def as_rgb8(frame):
    """An RGB(A) or grey array of any numeric type -> uint8 RGB (H, W, 3) (values clipped to
    [0, 255], alpha dropped, grey replicated)."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=-1)
    return frame[..., :3]


def to_gray(image):
    """uint8 (H, W), (H, W, 1) or RGB(A) (H, W, 3+) -> uint8 grey (H, W) (OpenCV's weights)."""
    image = np.asarray(image)
    if image.ndim == 2:
        return np.ascontiguousarray(image, dtype=np.uint8)
    if image.shape[2] == 1:
        return np.ascontiguousarray(image[..., 0], dtype=np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(image[..., :3], dtype=np.uint8), cv2.COLOR_RGB2GRAY)


def limited_size(width, height, max_pixels):
    """(width, height) of a width x height image after ``limit_image_size``: the same when it
    has at most ``max_pixels`` pixels (None or <= 0: no limit), else scaled down with the
    aspect ratio kept, each side rounded down, at least 1 pixel."""
    if not max_pixels or max_pixels <= 0 or height * width <= max_pixels:
        return width, height
    factor = math.sqrt(max_pixels / float(height * width))
    new_width = max(1, int(width * factor))
    new_height = max(1, int(height * factor))
    new_width = min(new_width, max(1, max_pixels // new_height))  # a side clamped to 1
    new_height = min(new_height, max(1, max_pixels // new_width))
    return new_width, new_height


def limit_image_size(rgb, max_pixels):
    """An image of at most ``max_pixels`` pixels: larger ones are downscaled to
    ``limited_size`` (area interpolation).

    rgb: (H, W) or (H, W, C) array; max_pixels: the largest H * W kept as is (None or <= 0:
    no limit). Returns (image, downscaled: bool); the input itself when it fits.
    """
    rgb = np.asarray(rgb)
    height, width = rgb.shape[:2]
    size = limited_size(width, height, max_pixels)
    if size == (width, height):
        return rgb, False
    resized = cv2.resize(np.ascontiguousarray(rgb), size, interpolation=cv2.INTER_AREA)
    if rgb.ndim == 3 and resized.ndim == 2:  # cv2 drops a single channel
        resized = resized[..., None]
    return resized, True
