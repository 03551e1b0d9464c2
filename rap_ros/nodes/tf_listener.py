"""The robot's frames as `/tf` and `/tf_static` publish them (robot_state_publisher, drivers).

``TfTopics`` subscribes to both topics directly and keeps a ``TransformTree`` (latest transform
of each edge, who parents whom). It serves where `tf2_ros` is not installed (ROS 2 from PyPI)
and, everywhere, answers the question tf2's Python buffer does not: does a frame already have
a parent, so a node never gives a frame a second one. Where `tf2_ros` is importable, lookups
go through its buffer (time-interpolated, the reference implementation); the parent check
stays on the topics.

Transforms are 4x4 ``T_target_source`` (metres); frame names without a leading '/'.
"""
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from tf2_msgs.msg import TFMessage

from rap_ros.geometry.transform_tree import TransformTree
from rap_ros.io import messages

try:  # optional: not on PyPI; present on a ROS 2 install
    import tf2_ros
except ImportError:
    tf2_ros = None

STATIC_QOS = QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                        reliability=ReliabilityPolicy.RELIABLE,
                        history=HistoryPolicy.KEEP_LAST)


class TfTopics:
    """Listens to /tf and /tf_static for ``node`` (in ``callback_group``, default the node's);
    ``ignore_child`` (e.g. the frame the node publishes itself) is tracked for parents like
    any other."""

    def __init__(self, node, max_frames=1000, callback_group=None):
        self.tree = TransformTree(max_frames=max_frames)
        self.static_sub = node.create_subscription(TFMessage, "/tf_static", self._on_static,
                                                   STATIC_QOS, callback_group=callback_group)
        self.dynamic_sub = node.create_subscription(TFMessage, "/tf", self._on_dynamic, 100,
                                                    callback_group=callback_group)
        self._buffer = None
        if tf2_ros is not None:
            self._buffer = tf2_ros.Buffer()
            self._listener = tf2_ros.TransformListener(self._buffer, node)

    @property
    def backend(self):
        return "tf2_ros" if self._buffer is not None else "tf topics"

    def _store(self, msg, static):
        for transform in msg.transforms:
            try:
                T = messages.transform_to_matrix(transform.transform)
            except ValueError:
                continue
            self.tree.set(transform.header.frame_id, transform.child_frame_id, T,
                          static=static, stamp=messages.stamp_seconds(transform.header.stamp))

    def _on_static(self, msg):
        self._store(msg, static=True)

    def _on_dynamic(self, msg):
        self._store(msg, static=False)

    def lookup(self, target, source):
        """Latest T_target_source, or None when not (yet) connected."""
        if self._buffer is not None:
            try:
                stamped = self._buffer.lookup_transform(target, source, Time())
                return messages.transform_to_matrix(stamped.transform)
            except Exception:  # tf2 raises LookupException, ConnectivityException, ...
                return None
        return self.tree.lookup(target, source)

    def parent(self, frame):
        """The frame that parents ``frame`` on /tf or /tf_static, or None."""
        return self.tree.parent(frame)
