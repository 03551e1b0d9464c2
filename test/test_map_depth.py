"""The warp's depth from the odometry's map (issue 12).

* Pure core (``rap_ros.pipeline.depth``): sparse points -> a dense z-depth map of a camera;
  a fronto-parallel and a slanted plane are recovered, outliers and points behind the camera
  do not matter, too few points in view give None (the callers fall back to the plane).
* ViewPipeline takes such a map at the preview size (as the node passes it).
* Messages: PointCloud2 encoded by ``nodes.conversions`` / ``io.messages.fill_pointcloud2``
  and decoded by ``io.messages.pointcloud2_to_xyz`` (other layouts too, bad clouds refused).

Across processes (the nodes publishing and using the map): test_map_points_nodes.py.
"""
import numpy as np
import pytest

from rap_ros.io import messages as msgs
from rap_ros.pipeline.depth import depth_from_points, points_in_view, project_points

H, W = 96, 128
K = np.array([[100.0, 0.0, 63.5], [0.0, 100.0, 47.5], [0.0, 0.0, 1.0]])


def camera_pose():
    """A camera somewhere in the world, turned a little (camera-to-world)."""
    from rap_ros.geometry.rotations import rotation_from_axis_angle

    c2w = np.eye(4)
    c2w[:3, :3] = rotation_from_axis_angle(np.array([0.2, 1.0, 0.1]), 0.4)
    c2w[:3, 3] = [1.0, -2.0, 3.0]
    return c2w


def plane_points(normal, distance, count, c2w, rng, spill=10.0):
    """``count`` world points on the plane n.X = d of the camera frame, at random pixels
    (up to ``spill`` pixels outside the image), and the true depth map of the plane."""
    normal = np.asarray(normal, float) / np.linalg.norm(normal)
    u = rng.uniform(-spill, W - 1 + spill, count)
    v = rng.uniform(-spill, H - 1 + spill, count)
    rays = np.linalg.inv(K) @ np.stack([u, v, np.ones(count)])
    camera = (rays * (distance / (normal @ rays))).T
    world = camera @ c2w[:3, :3].T + c2w[:3, 3]
    vv, uu = np.mgrid[:H, :W]
    grid = np.linalg.inv(K) @ np.stack([uu.ravel(), vv.ravel(), np.ones(H * W)])
    truth = (distance / (normal @ grid)).reshape(H, W)
    return world, truth


@pytest.mark.parametrize("normal", [(0.0, 0.0, 1.0), (0.3, -0.5, 1.0)])
def test_plane_depth_recovered_from_sparse_points(normal):
    rng = np.random.default_rng(0)
    c2w = camera_pose()
    points, truth = plane_points(normal, 4.0, 200, c2w, rng)
    depth = depth_from_points(points, c2w, K, (H, W))
    assert depth.shape == (H, W) and depth.dtype == np.float32
    error = np.abs(depth - truth) / truth
    # inverse depth is affine on a plane: exact inside the points' hull (float32), the
    # clamp to the 1-99 % depth range touches only the extreme corners
    assert np.median(error) < 1e-4
    assert np.percentile(error, 95) < 1e-3
    assert error.max() < 0.15


def test_depth_robust_to_outliers_and_points_behind():
    rng = np.random.default_rng(1)
    c2w = camera_pose()
    points, truth = plane_points((0.0, 0.0, 1.0), 5.0, 300, c2w, rng)
    camera = (points - c2w[:3, 3]) @ c2w[:3, :3]
    bad = camera[:10] * np.array([[1.0, 1.0, 0.05]])  # 10 points pulled to 0.25 m
    behind = camera[10:40] * np.array([[1.0, 1.0, -1.0]])  # 30 points behind the camera
    extra = np.concatenate([bad, behind]) @ c2w[:3, :3].T + c2w[:3, 3]
    depth = depth_from_points(np.concatenate([points, extra, [[np.nan, 0, 0]]]), c2w, K,
                              (H, W))
    error = np.abs(depth - truth) / truth
    assert np.percentile(error, 99) < 1e-3, np.percentile(error, 99)
    assert depth.min() > 4.9


def test_too_few_points_in_view_gives_none():
    rng = np.random.default_rng(2)
    c2w = camera_pose()
    points, _ = plane_points((0.0, 0.0, 1.0), 3.0, 19, c2w, rng, spill=0.0)
    assert depth_from_points(points, c2w, K, (H, W)) is None           # 19 < 20
    assert depth_from_points(points, c2w, K, (H, W), min_points=10) is not None
    assert depth_from_points(np.zeros((0, 3)), c2w, K, (H, W)) is None
    # many points, but out of view (behind, or outside the image): None too
    many, _ = plane_points((0.0, 0.0, 1.0), 3.0, 200, c2w, rng, spill=0.0)
    camera = (many - c2w[:3, 3]) @ c2w[:3, :3]
    behind = (camera * [1, 1, -1]) @ c2w[:3, :3].T + c2w[:3, 3]
    assert points_in_view(behind, c2w, K, (H, W)) == 0
    assert depth_from_points(behind, c2w, K, (H, W)) is None
    beside = (camera + [50.0, 0, 0]) @ c2w[:3, :3].T + c2w[:3, 3]
    assert depth_from_points(beside, c2w, K, (H, W)) is None
    # collinear projections (no triangulation): nearest only, still a depth map
    line = np.stack([np.linspace(-1, 1, 30), np.zeros(30), np.full(30, 2.0)], 1)
    depth = depth_from_points(line, np.eye(4), K, (H, W))
    assert depth is not None and np.allclose(depth, 2.0, atol=1e-5)


def test_project_points_convention():
    c2w = camera_pose()
    camera = np.array([[0.0, 0.0, 2.0], [1.0, -0.5, 4.0], [0.0, 0.0, -1.0]])
    world = camera @ c2w[:3, :3].T + c2w[:3, 3]
    uv, z = project_points(world, c2w, K)
    np.testing.assert_allclose(z, camera[:, 2], atol=1e-12)
    np.testing.assert_allclose(uv[0], [63.5, 47.5], atol=1e-9)
    np.testing.assert_allclose(uv[1], [63.5 + 25.0, 47.5 - 12.5], atol=1e-9)
    assert np.isnan(uv[2]).all()


def test_pointcloud2_round_trip_and_layouts():
    pytest.importorskip("rclpy")
    from sensor_msgs.msg import PointCloud2, PointField

    from rap_ros.nodes import conversions as cv

    points = np.random.default_rng(3).normal(size=(50, 3)) * 10
    points[7] = np.nan
    msg = cv.points_to_pointcloud2(points, cv.seconds_to_stamp(12.5), "odom")
    assert (msg.header.frame_id, msg.height, msg.width, msg.point_step) == ("odom", 1, 49, 12)
    assert msg.is_dense and [f.name for f in msg.fields] == ["x", "y", "z"]
    back = msgs.pointcloud2_to_xyz(msg)
    np.testing.assert_allclose(back, np.delete(points, 7, axis=0), rtol=1e-6, atol=1e-5)
    assert msgs.pointcloud2_to_xyz(cv.points_to_pointcloud2(np.zeros((0, 3)))).shape == (0, 3)

    # An organised, big-endian float64 cloud with an intensity field and padding, z first.
    grid = np.random.default_rng(4).normal(size=(2, 3, 3))
    record = np.dtype([("z", ">f8"), ("intensity", ">f4"), ("x", ">f8"), ("y", ">f8"),
                       ("pad", "V4")])
    data = np.zeros((2, 3), record)
    data["x"], data["y"], data["z"] = grid[..., 0], grid[..., 1], grid[..., 2]
    row_step = 3 * record.itemsize + 8  # padded rows
    raw = np.zeros((2, row_step), np.uint8)
    raw[:, :3 * record.itemsize] = data.view(np.uint8).reshape(2, -1)
    cloud = PointCloud2(height=2, width=3, is_bigendian=True, point_step=record.itemsize,
                        row_step=row_step, data=raw.tobytes(), fields=[
                            PointField(name="z", offset=0, datatype=8, count=1),
                            PointField(name="intensity", offset=8, datatype=7, count=1),
                            PointField(name="x", offset=12, datatype=8, count=1),
                            PointField(name="y", offset=20, datatype=8, count=1)])
    np.testing.assert_allclose(msgs.pointcloud2_to_xyz(cloud), grid.reshape(-1, 3))

    cloud.fields = cloud.fields[:3]
    with pytest.raises(ValueError, match="no y"):
        msgs.pointcloud2_to_xyz(cloud)
    short = cv.points_to_pointcloud2(points[:4])
    short.data = bytes(short.data)[:20]
    with pytest.raises(ValueError, match="fewer than"):
        msgs.pointcloud2_to_xyz(short)


def test_view_pipeline_takes_a_map_at_the_preview_size():
    """ViewPipeline warps with a depth map of any size (the node hands it one at the preview
    size, P of them): the warp of a plane's map equals the plane's homography warp up to
    the splat's rounding, at the source's size and at a smaller preview size."""
    pytest.importorskip("onnxruntime")
    from rap_ros.backend.shared import get_backend
    from rap_ros.geometry.cameras import relative_to_first, scale_intrinsics
    from rap_ros.pipeline.views import ViewPipeline

    try:
        backend = get_backend("onnx")
    except Exception:
        pytest.skip("no shipped ONNX model")
    T = int(backend.config.frames)
    rng = np.random.default_rng(5)
    source = cv2_blur(rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    rel = np.tile(np.eye(4), (T, 1, 1))
    rel[:, 2, 3] = np.linspace(0.0, 0.6, T)
    rel[:, 0, 3] = np.linspace(0.0, 0.2, T)
    rel, scale = relative_to_first(rel)
    c2w = np.eye(4)
    points, truth = plane_points((0.0, 0.0, 1.0), 4.0, 100, c2w, rng)
    for pixels, size in ((0, (H, W)), (H * W // 4, (H // 2, W // 2))):
        pipe = ViewPipeline(backend, preview="warp", max_preview_pixels=pixels)
        assert pipe.preview_size(H, W) == size
        K_preview = scale_intrinsics(K, size[1] / W, size[0] / H)
        depth = depth_from_points(points, c2w, K_preview, size)
        assert depth.shape == size
        mapped = pipe.predict_batch(source, K, rel[None], depth=depth[None] / scale)
        plane = pipe.predict_batch(source, K, rel[None], depth=4.0 / scale)
        wrong = pipe.predict_batch(source, K, rel[None], depth=1.5 / scale)
        assert mapped.shape == plane.shape == (1, T) + size + (3,)
        # measured: 1.0 and 1.9 (splat vs bilinear); a plane at 1.5 instead of 4: 7-8
        assert np.abs(mapped.astype(int) - plane).mean() < 3.0
        assert np.abs(wrong.astype(int) - plane).mean() > 5.0


def cv2_blur(image):
    import cv2

    return cv2.GaussianBlur(image, (0, 0), 2.0)
