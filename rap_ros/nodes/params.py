"""Parameters of the rap_ros nodes: declaration with validation, and what they build.

Parameters are read-only after start unless a node says otherwise; a value the node cannot run with raises
``ParameterError`` (a ValueError) naming the parameter, which ``rap_ros.nodes.runner`` prints
as a one-line error. Mount parameters follow REP-103: ``camera_mount_xyz`` in metres and
``camera_mount_rpy`` in radians (fixed-axis roll, pitch, yaw of the camera's body axes in the
base frame; the optical rotation is added on top).
"""
import math

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from rap_ros.backend.shared import get_backend
from rap_ros.geometry.frames import body_to_optical, matrix_from_xyz_rpy
from rap_ros.pipeline.sampling import SAMPLERS


class ParameterError(ValueError):
    """A parameter value the node cannot run with."""


def declare(node, name, default, description, low=None, high=None, choices=None,
            read_only=True):
    """Declare parameter ``name`` (read-only after start unless ``read_only`` is False) and
    return its validated value.

    low/high: inclusive numeric range, given to rclpy in the descriptor (so it refuses
    out-of-range overrides) and checked again here; choices: allowed strings.
    """
    descriptor = ParameterDescriptor(description=description, read_only=bool(read_only))
    if choices:
        descriptor.additional_constraints = "one of: " + ", ".join(choices)
    if low is not None:
        if isinstance(default, int) and not isinstance(default, bool):
            descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high),
                                                     step=0)]
        else:
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(low), to_value=float(high), step=0.0)]
    try:
        value = node.declare_parameter(name, default, descriptor).value
    except Exception as error:  # InvalidParameterValueException, type mismatch
        raise ParameterError(f"parameter '{name}': {error}") from error
    if choices and value not in choices:
        raise ParameterError(f"parameter '{name}' is {value!r}; expected one of {list(choices)}")
    if low is not None and not (low <= value <= high):
        raise ParameterError(f"parameter '{name}' is {value}; expected {low} <= value <= {high}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ParameterError(f"parameter '{name}' must be finite, got {value}")
    return value


def declare_vector(node, name, default, description):
    """Declare a read-only array of three finite doubles."""
    descriptor = ParameterDescriptor(description=description, read_only=True)
    try:
        value = node.declare_parameter(name, [float(v) for v in default], descriptor).value
    except Exception as error:
        raise ParameterError(f"parameter '{name}': {error}") from error
    value = [float(v) for v in value]
    if len(value) != 3 or not all(math.isfinite(v) for v in value):
        raise ParameterError(f"parameter '{name}' must be 3 finite numbers, got {value}")
    return value


def declare_model_parameters(node, job):
    """Parameters of the shared backend and the sampler of ``job`` ("estimate"/"predict")."""
    estimate = job == "estimate"
    return dict(
        backend=declare(node, "backend", "onnx",
                        "Inference backend spec for rap_ros.backend.shared.get_backend: "
                        "'onnx' or 'torch' (shipped weights), or a model folder. One "
                        "backend is shared by all nodes of a process."),
        steps=declare(node, "steps", 2 if estimate else 1,
                      "Flow integration steps per model call (more: slower, smoother).",
                      1, 100),
        sampler=declare(node, "sampler", "euler",
                        "ODE sampler of the flow: euler (1 model call per step) or heun (2).",
                        choices=SAMPLERS),
        seed=declare(node, "seed", 0, "Seed of the sampling noise.", 0, 2 ** 31 - 1),
    )


def resolve_backend(backend, spec):
    """`backend` when given (tests, `rap-ros up` sharing one), else the process-wide backend
    for the `backend` parameter's spec; a malformed spec is a ParameterError (a missing or
    corrupt model file raises ModelFileError, naming the file)."""
    if backend is not None:
        return backend
    try:
        return get_backend(spec)
    except ValueError as error:
        raise ParameterError(f"parameter 'backend': {error}") from error


def declare_mount_parameters(node):
    """camera_mount_xyz/rpy -> T_base_optical (4x4): the optical frame in the base frame."""
    xyz = declare_vector(node, "camera_mount_xyz", [0.0, 0.0, 0.0],
                         "Camera position in base_frame, metres (x forward, y left, z up).")
    rpy = declare_vector(node, "camera_mount_rpy", [0.0, 0.0, 0.0],
                         "Camera orientation in base_frame as roll, pitch, yaw (rad, fixed "
                         "axes) of the camera's body axes (x forward, z up); pitch > 0 looks "
                         "down. The optical rotation (x right, y down, z forward) is added.")
    return body_to_optical(matrix_from_xyz_rpy(xyz, rpy))


def reliability_qos(reliability, depth):
    """QoS for sensor streams: sensor-data (best effort, keep last) or reliable."""
    if reliability == "best_effort":
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                          reliability=ReliabilityPolicy.BEST_EFFORT,
                          durability=DurabilityPolicy.VOLATILE)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)
