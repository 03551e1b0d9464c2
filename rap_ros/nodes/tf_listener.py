"""The robot's frames as `/tf` and `/tf_static` publish them (robot_state_publisher, drivers).

``TfTopics`` subscribes to both topics directly and keeps a ``TransformTree`` (latest transform
of each edge, who parents whom). It serves where `tf2_ros` is not installed (ROS 2 from PyPI)
and, everywhere, answers the question tf2's Python buffer does not: does another node publish
an edge into a frame this node publishes, so a node never gives a frame a second parent.
Where `tf2_ros` is importable, lookups go through its buffer (time-interpolated, the reference
implementation); the parent check stays on the topics.

Conflicts (``watch``, ``conflict``): the node declares the edges it publishes on /tf
(``watch(parent, child)``) and sends them through ``publisher(...)``, which records each
transform it sends. Its own transforms come back through its /tf subscription; an arriving
transform into a watched child is the node's own when it equals one it sent and has not come
back yet (frames, stamp and values compared exactly: DDS carries the float64 values
unchanged). Every other edge into a watched child is a conflict: another parent (on /tf or
/tf_static), or the same parent published by someone else (e.g. a diff_drive_controller's
odom -> base_link). An edge already in the tree when the child is watched (before the node
published it) is someone else's too. The first conflict of a child is kept for the life of
the ``TfTopics`` (latched: it never clears; restart the node once the other publisher is
gone). The record of sent transforms is bounded (SENT_MEMORY, oldest forgotten): a transform
of ours that comes back after that many newer ones would be taken for a conflict.

Transforms are 4x4 ``T_target_source`` (metres); frame names without a leading '/'.
"""
import collections
import threading

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from tf2_msgs.msg import TFMessage

from rap_ros.geometry.transform_tree import TransformTree, frame_name
from rap_ros.io import messages

try:  # optional: not on PyPI; present on a ROS 2 install
    import tf2_ros
except ImportError:
    tf2_ros = None

STATIC_QOS = QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                        reliability=ReliabilityPolicy.RELIABLE,
                        history=HistoryPolicy.KEEP_LAST)
SENT_MEMORY = 1000  # transforms sent and not come back yet, remembered to recognise them
MAX_WATCHED = 64    # children watched (base_frame, or each camera frame without one)


def transform_key(transform):
    """Identity of a geometry_msgs/TransformStamped: frames, stamp and exact values."""
    header, t = transform.header, transform.transform
    return (frame_name(header.frame_id), frame_name(transform.child_frame_id),
            int(header.stamp.sec), int(header.stamp.nanosec),
            t.translation.x, t.translation.y, t.translation.z,
            t.rotation.x, t.rotation.y, t.rotation.z, t.rotation.w)


class Conflict(collections.namedtuple("Conflict", "parent child topic same_parent")):
    """Another node's edge ``parent -> child`` on ``topic`` ("/tf" or "/tf_static") into a
    child this node publishes; ``same_parent``: the node's own edge, published by another."""


class RecordingPublisher:
    """A /tf publisher that records what it sends (``TfTopics.publisher``)."""

    def __init__(self, publisher, tf_topics):
        self.publisher, self.tf_topics = publisher, tf_topics

    def publish(self, msg):
        self.tf_topics.sent(msg.transforms)  # before: our copy may come back at once
        self.publisher.publish(msg)

    def __getattr__(self, name):  # get_subscription_count, topic_name, ...
        return getattr(self.publisher, name)


class TfTopics:
    """Listens to /tf and /tf_static for ``node`` (in ``callback_group``, default the node's);
    see the module docstring for ``watch``, ``publisher`` and ``conflict``. Thread-safe: the
    tree and the records are read and changed under one lock, which is never held while
    calling out (a caller may hold its own lock around any method, never the reverse)."""

    def __init__(self, node, max_frames=1000, callback_group=None):
        self.tree = TransformTree(max_frames=max_frames)
        self._lock = threading.Lock()
        self._watched = {}                          # child -> parent we publish on /tf
        self._sent = collections.OrderedDict()      # transform_key -> copies not come back
        self._conflicts = {}                        # child -> first Conflict
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

    # -------------------------------------------------------------- our own edges

    def publisher(self, publisher):
        """``publisher`` (of /tf) wrapped so that what it sends is recognised coming back."""
        return RecordingPublisher(publisher, self)

    def sent(self, transforms):
        """Record transforms this node is about to publish on /tf."""
        with self._lock:
            for transform in transforms:
                key = transform_key(transform)
                self._sent[key] = self._sent.pop(key, 0) + 1
            while len(self._sent) > SENT_MEMORY:
                self._sent.popitem(last=False)

    def watch(self, parent, child):
        """This node publishes ``parent -> child`` on /tf: from now on any other edge into
        ``child`` is a conflict; one already known (the node has not published yet) is.
        Returns whether ``child`` is watched: False once MAX_WATCHED other children are (the
        node must not publish an edge it cannot check)."""
        parent, child = frame_name(parent), frame_name(child)
        with self._lock:
            if child in self._watched:
                return True
            if len(self._watched) >= MAX_WATCHED:
                return False
            self._watched[child] = parent
            known = self.tree.parent(child)
            if known is not None and child not in self._conflicts:
                topic = "/tf_static" if self.tree.is_static(child) else "/tf"
                self._conflicts[child] = Conflict(known, child, topic, known == parent)
            return True

    def watched(self):
        """The children watched (``watch``), sorted."""
        with self._lock:
            return sorted(self._watched)

    def conflict(self, child):
        """The first Conflict over ``child`` (latched), or None."""
        with self._lock:
            return self._conflicts.get(frame_name(child))

    def _check(self, transform, static):
        """Note a conflict when ``transform`` is another node's edge into a watched child.
        Caller holds the lock."""
        child = frame_name(transform.child_frame_id)
        ours = self._watched.get(child)
        if ours is None or child in self._conflicts:
            return
        parent = frame_name(transform.header.frame_id)
        if not static and parent == ours:
            key = transform_key(transform)
            copies = self._sent.get(key, 0)
            if copies:  # our own, back through our subscription
                if copies == 1:
                    del self._sent[key]
                else:
                    self._sent[key] = copies - 1
                return
        self._conflicts[child] = Conflict(parent, child, "/tf_static" if static else "/tf",
                                          parent == ours)

    # -------------------------------------------------------------- the robot's tree

    def _store(self, msg, static):
        with self._lock:  # ``watch`` reads the tree: no edge slips in between
            for transform in msg.transforms:
                self._check(transform, static)
                try:
                    T = messages.transform_to_matrix(transform.transform)
                except ValueError:
                    continue
                self.tree.set(transform.header.frame_id, transform.child_frame_id, T,
                              static=static,
                              stamp=messages.stamp_seconds(transform.header.stamp))

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
        with self._lock:  # the /tf callbacks change the tree (``_store``)
            return self.tree.lookup(target, source)

    def parent(self, frame):
        """The frame that last parented ``frame`` on /tf or /tf_static, or None."""
        with self._lock:
            return self.tree.parent(frame)
