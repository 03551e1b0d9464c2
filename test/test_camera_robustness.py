"""The odometry core on what real cameras add (rap_ros.synth.camera_effects): an object
moving on its own kept out of the map, and new tracks spread over the image."""
import numpy as np
from scipy.spatial.transform import Rotation

from rap_ros.metrics import ate, path_length
from rap_ros.odometry import OdometryConfig, VisualOdometry
from rap_ros.odometry.frontend import Tracker
from rap_ros.odometry.twoview import epipolar_error, project
from rap_ros.synth.dataset import held_out_seed, sample_clip

K = np.array([[250.0, 0, 159.5], [0, 250.0, 119.5], [0, 0, 1]])


def _ate_pct(vo, gt):
    est = vo.trajectory()
    return 100 * ate(est, gt[:len(est)])["rmse"] / max(path_length(gt), 1e-9)


def _run(clip, config):
    vo = VisualOdometry(clip.K, config)
    for i, frame in enumerate(clip.frames):
        vo.push(frame, stamp=float(clip.stamps[i]))
    return vo


def test_epipolar_error_tells_a_moving_point_from_static_ones():
    rng = np.random.default_rng(1)
    points = np.c_[rng.uniform(-3, 3, (50, 2)), rng.uniform(4, 8, 50)]
    a = np.eye(4)
    b = np.eye(4)
    b[:3, :3] = Rotation.from_rotvec([0, 0.05, 0]).as_matrix()
    b[:3, 3] = [0.3, 0.0, 0.2]
    pa, pb = project(K, a, points)[0], project(K, b, points)[0]
    assert epipolar_error(K, a, b, pa, pb).max() < 1e-6
    moved = pb + [0.0, 6.0]  # moved off its epipolar line (which runs nearly sideways here)
    assert epipolar_error(K, a, b, pa, moved).min() > 3.0
    assert not epipolar_error(K, a, a, pa, pb).any()  # one centre: no epipolar geometry


def test_new_corners_are_spread_over_the_image():
    """Strong texture in the left quarter, faint texture elsewhere: the strongest corners all
    lie left; spread, each of the 12 cells (4 x 3) gets its share, and a cell that already
    holds tracks gets none until the others have caught up."""
    rng = np.random.default_rng(2)
    image = rng.integers(110, 146, (240, 320)).astype(np.uint8)   # faint
    image[:, :80] = rng.integers(0, 255, (240, 80))                # strong, one column of cells
    image = np.kron(image[::2, ::2], np.ones((2, 2), np.uint8))    # 2 px blobs: trackable
    empty = np.zeros((0, 2), np.float32)
    dense = Tracker(OdometryConfig(grid_cells=0), (320, 240)).detect(image, empty, 96)
    assert len(dense) == 96 and (dense[:, 0] < 80).all()
    spread = Tracker(OdometryConfig(grid_cells=12), (320, 240)).detect(image, empty, 96)
    cells = (spread[:, 0] // 80).astype(int) + 4 * (spread[:, 1] // 80).astype(int)
    np.testing.assert_array_equal(np.bincount(cells, minlength=12), np.full(12, 8))
    held = np.array([[200.0, 40.0]] * 20, np.float32)              # 20 tracks in cell 2
    more = Tracker(OdometryConfig(grid_cells=12), (320, 240)).detect(image, held, 96)
    cells = (more[:, 0] // 80).astype(int) + 4 * (more[:, 1] // 80).astype(int)
    assert np.bincount(cells, minlength=12)[2] == 0


def test_an_object_crossing_the_view_does_not_take_over_the_pose():
    clip = sample_clip(held_out_seed(502), frames=120, height=240, width=320,
                       trajectory="forward", scene="street", effects=("moving_object",))
    checked = _run(clip, OdometryConfig())
    unchecked = _run(clip, OdometryConfig(epipolar_px=0.0))
    assert checked.stats["moving_tracks"] > 0
    assert _ate_pct(checked, clip.c2w) < 0.3 * _ate_pct(unchecked, clip.c2w)


def test_no_new_corners_next_to_tracks_just_found_moving():
    rng = np.random.default_rng(4)
    image = np.kron(rng.integers(0, 255, (120, 160)), np.ones((2, 2))).astype(np.uint8)
    config = OdometryConfig(moving_mask_frac=0.06)
    tracker = Tracker(config, (320, 240))
    moving = np.array([[100.0, 100.0], [220.0, 60.0]], np.float32)
    corners = tracker.detect(image, np.zeros((0, 2), np.float32), 300, avoid=moving)
    radius = config.moving_mask_frac * tracker.diagonal
    distance = np.linalg.norm(corners[:, None] - moving[None], axis=2)
    assert len(corners) > 100 and distance.min() >= radius - 1
    near = Tracker(OdometryConfig(moving_mask_frac=0.0), (320, 240)).detect(
        image, np.zeros((0, 2), np.float32), 300, avoid=moving)
    assert np.linalg.norm(near[:, None] - moving[None], axis=2).min() < radius - 1
