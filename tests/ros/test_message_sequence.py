"""`PublisherSequences`: which messages are new and how many a subscription never took, from rclpy's message info;
checked on made-up infos and on a real subscription whose queue a burst overflows."""
import time

from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from synseg_ros.message_sequence import PublisherSequences


def info(publisher: bytes, sequence: int | None) -> dict:
    return {"publisher_gid": {"data": publisher}, "publication_sequence_number": sequence}


def test_gaps_per_publisher_duplicates_and_late_messages():
    sequences = PublisherSequences()
    assert [sequences.advance(info(b"front", n)) for n in (1, 2, 5, 6, 10)] == [0, 0, 2, 0, 3]
    assert [sequences.advance(info(b"rear", n)) for n in (100, 101, 103)] == [0, 0, 1]  # its own numbering
    assert sequences.advance(info(b"front", 10)) is None  # a duplicate (e.g. a second subscription's copy)
    assert sequences.advance(info(b"front", 8)) is None  # late: older than the newest taken
    assert sequences.advance(info(b"front", 11)) == 0
    assert sequences.advance(info(b"", None)) == 0  # a middleware without sequence numbers: nothing inferred


def test_a_real_subscription_reports_the_messages_its_queue_dropped(ros_context, unique_ns):
    node = Node(f"sequence_test_{unique_ns.strip('/')}", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    taken = []
    sequences = PublisherSequences()
    node.create_subscription(String, f"{unique_ns}/seq", lambda msg, meta: taken.append(
        (msg.data, sequences.advance(meta))), qos)
    publisher = node.create_publisher(String, f"{unique_ns}/seq", qos)
    try:
        deadline = time.monotonic() + 10
        while not taken and time.monotonic() < deadline:  # until matched and the first message is through
            publisher.publish(String(data="first"))
            executor.spin_once(timeout_sec=0.1)
        assert taken and taken[-1][1] == 0, taken
        for n in range(5):  # nobody takes these: the depth-1 queue keeps only the newest
            publisher.publish(String(data=f"burst {n}"))
        time.sleep(0.5)
        count = len(taken)
        while len(taken) == count and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        assert taken[-1] == ("burst 4", 4), taken  # burst 0-3 were replaced in the queue, never taken
    finally:
        executor.shutdown()
        node.destroy_node()
