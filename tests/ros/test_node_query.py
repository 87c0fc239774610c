"""Queries over DDS and parameters: latched and plain publishers, label_info with query ids, changes, rejection
of bad queries, and no output of an old query after the label_info of a new one."""
import json
import threading
import time

import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from synseg_msgs.msg import Segmentation
from synseg_test_utils import (LATCHED, RELIABLE, counter, make_node, start, start_rig, wait_subscribed,
                               wait_until)

pytestmark = pytest.mark.ros
IMAGE = np.random.default_rng(4).integers(0, 256, size=(24, 32, 3), dtype=np.uint8)


def names(label_info_msg):
    return [c["name"] for c in json.loads(label_info_msg.data)["categories"]]


def mask_channels(rig, index):
    """Publish one frame and return how many masks its Segmentation message carries."""
    return len(rig.output_of("segmentation", rig.send(IMAGE, "rgb8", index)).masks)


def test_query_published_before_start_is_applied_and_late_subscribers_get_it(ros, unique_ns):
    query_pub = ros.publisher(String, f"{unique_ns}/query", LATCHED)
    query_pub.publish(String(data="car; bicycle\nperson, car"))  # nobody listens yet
    node = make_node(ros, unique_ns, categories="tree")  # the default query is replaced by the latched one
    start(node)
    wait_until(lambda: node.categories == ("car", "bicycle", "person"), what="the latched query to apply")
    late = ros.subscribe(String, f"{unique_ns}/synseg/label_info", LATCHED)  # subscribes after publication
    assert late.wait_for(lambda m: names(m) == ["car", "bicycle", "person"], "label_info for the query")
    info = json.loads(late.snapshot()[-1].data)
    assert info["query_id"] == node.gate.current.query_id and info["background_id"] == 0


def test_new_query_changes_label_info_and_outputs(ros, unique_ns):
    rig = start_rig(ros, unique_ns, outputs=["segmentation"], categories="cat, dog")
    info = ros.subscribe(String, f"{unique_ns}/synseg/label_info", LATCHED)
    first = json.loads(info.wait_for(lambda m: names(m) == ["cat", "dog"], "label_info for the default query").data)
    assert mask_channels(rig, 0) == 2

    query_pub = ros.publisher(String, f"{unique_ns}/query", LATCHED)
    wait_subscribed(query_pub, "the query topic")
    query_pub.publish(String(data="sky, road, car, tree"))
    second = json.loads(info.wait_for(lambda m: names(m) == ["sky", "road", "car", "tree"], "the new query").data)
    assert second["query_id"] > first["query_id"]
    seg = rig.output_of("segmentation", rig.send(IMAGE, "rgb8", 1))
    assert seg.query_id == second["query_id"] and list(seg.categories) == ["sky", "road", "car", "tree"]
    assert len(seg.masks) == 4


def test_a_plain_volatile_publisher_reaches_a_private_query_topic(ros, unique_ns):
    # `ros2 topic pub /topic std_msgs/String ...` without QoS flags: reliable, volatile.
    node = make_node(ros, unique_ns, categories="cat", query_topic="~/query")
    start(node)
    plain = ros.publisher(String, f"{unique_ns}/synseg/query",
                          QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                     durability=DurabilityPolicy.VOLATILE))
    wait_subscribed(plain, "~/query")
    plain.publish(String(data="person, bicycle"))
    wait_until(lambda: node.categories == ("person", "bicycle"), what="the plain publisher's query to apply")


def test_a_change_of_background_announces_a_new_label_set(ros, unique_ns):
    rig = start_rig(ros, unique_ns, outputs=["segmentation"], categories="cat, dog")
    info = ros.subscribe(String, f"{unique_ns}/synseg/label_info", LATCHED)
    before = json.loads(info.wait_for(lambda m: names(m) == ["cat", "dog"]).data)
    assert before["background_id"] == 0
    assert rig.node.set_parameters([Parameter("background", value=False)])[0].successful
    after = json.loads(info.wait_for(lambda m: json.loads(m.data)["background_id"] is None,
                                     "label_info without background").data)
    assert after["query_id"] > before["query_id"] and names(info.snapshot()[-1]) == ["cat", "dog"]
    seg = rig.output_of("segmentation", rig.send(IMAGE, "rgb8", 0))
    assert seg.query_id == after["query_id"] and not seg.has_background


def test_over_limit_and_empty_queries_are_rejected_and_the_old_query_stays(ros, unique_ns, capfd):
    rig = start_rig(ros, unique_ns, outputs=["segmentation"], categories="cat, dog", max_categories=3,
                    max_category_length=10, log_throttle_s=0.0)
    info = ros.subscribe(String, f"{unique_ns}/synseg/label_info", LATCHED)
    info.wait_for(lambda m: names(m) == ["cat", "dog"])
    query_pub = ros.publisher(String, f"{unique_ns}/query", LATCHED)
    wait_subscribed(query_pub, "the query topic")
    bad_queries = ["a, b, c, d", " ,; \n", "an extremely long category"]
    for n, text in enumerate(bad_queries, start=1):
        query_pub.publish(String(data=text))
        rig.diagnostics_where(lambda v, n=n: counter(v, "rejected_queries") == n, f"{n} rejected queries")
    assert rig.node.categories == ("cat", "dog")
    assert [names(m) for m in info.snapshot()] == [["cat", "dog"]]  # label_info never changed
    assert mask_channels(rig, 0) == 2
    err = capfd.readouterr().err
    assert "4 categories; at most 3 are allowed" in err and "holds no category" in err
    assert "26 characters long; at most 10" in err and "keeping the previous query (2 categories)" in err


def test_categories_parameter_applies_live_and_rejects_bad_values(ros, unique_ns):
    node = make_node(ros, unique_ns, categories="cat", max_categories=2)
    start(node)
    info = ros.subscribe(String, f"{unique_ns}/synseg/label_info", LATCHED)
    info.wait_for(lambda m: names(m) == ["cat"])
    assert node.set_parameters([Parameter("categories", value="person; chair")])[0].successful
    info.wait_for(lambda m: names(m) == ["person", "chair"], "label_info after `ros2 param set categories`")
    result = node.set_parameters([Parameter("categories", value="a, b, c")])[0]
    assert not result.successful and "3 categories; at most 2" in result.reason
    result = node.set_parameters([Parameter("categories", value="")])[0]
    assert not result.successful and "holds no category" in result.reason
    assert node.categories == ("person", "chair")
    assert node.get_parameter("categories").value == "person; chair"


def test_no_output_of_an_old_query_is_published_after_the_label_info_of_a_new_one(ros, unique_ns):
    """Frames flood while the query changes: every Segmentation of an older query id was published (DDS source
    time, the node's clock) before the label_info announcing a newer id, and carries its own id's names."""
    rig = start_rig(ros, unique_ns, categories="q0 a, q0 b", short_side=192, window=0, image_depth=2)
    published = {"label_info": [], "segmentation": []}
    lock = threading.Lock()

    def keep(kind):
        def callback(msg, info):
            with lock:
                published[kind].append((info["source_timestamp"], msg))
        return callback

    rig.harness.helper.create_subscription(String, f"{unique_ns}/synseg/label_info", keep("label_info"), LATCHED)
    rig.harness.helper.create_subscription(Segmentation, f"{unique_ns}/synseg/segmentation", keep("segmentation"),
                                           RELIABLE)
    wait_until(lambda: rig.pipeline.subscription_count("segmentation") > 0, what="the node to see ~/segmentation")
    query_pub = rig.harness.publisher(String, f"{unique_ns}/query", LATCHED)
    wait_subscribed(query_pub, "the query topic")
    stop = threading.Event()

    def flood():
        index = 0
        while not stop.is_set():
            rig.send(IMAGE, "rgb8", index)
            index += 1
            time.sleep(0.002)
    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    try:
        for n in range(1, 9):
            # Each query is switched to while frames are in flight, after the previous one produced outputs, so
            # several ids have outputs and every switch lands at some point of a frame's inference.
            query_pub.publish(String(data=", ".join(f"q{n} {c}" for c in "abc"[:1 + n % 3])))
            wait_until(lambda: rig.node.categories[0].startswith(f"q{n} "), what=f"query {n}")
            current = rig.node.gate.current.query_id
            wait_until(lambda: any(m.query_id == current for _, m in list(published["segmentation"])),
                       what=f"outputs of query {n}")
            time.sleep(0.01 * (n % 3))
        last = rig.node.gate.current.query_id
        wait_until(lambda: any(m.query_id == last for _, m in published["segmentation"]), what="its outputs")
    finally:
        stop.set()
        flooder.join(timeout=10)
    with lock:
        announced = {json.loads(m.data)["query_id"]: (t, names(m)) for t, m in published["label_info"]}
        outputs = list(published["segmentation"])
    assert len({m.query_id for _, m in outputs}) >= 3, "too few queries produced outputs to test the ordering"
    for sent, msg in outputs:
        assert list(msg.categories) == announced[msg.query_id][1]  # the names its label_info announced
        later = [t for qid, (t, _) in announced.items() if qid > msg.query_id]
        assert all(sent < t for t in later), f"an output of query {msg.query_id} followed a newer label_info"


def test_a_late_copy_of_an_older_query_never_brings_it_back(ros, unique_ns):
    """Both query subscriptions deliver a sample, in either order: the second copy, or an older sample arriving
    after a newer one of the same publisher, is ignored; another publisher's samples count on their own."""
    rig = start_rig(ros, unique_ns, categories="first")
    node = rig.node

    def deliver(text: str, publisher: bytes, sequence: int) -> None:
        node._on_query(String(data=text), {"publisher_gid": {"data": publisher}, "publication_sequence_number":
                                           sequence}, "test")

    deliver("a, b", b"one", 1)
    deliver("c", b"one", 3)  # the latched subscription (depth 1) has only the newest sample
    query_id = node.gate.current.query_id
    for text, sequence in (("a, b", 1), ("x", 2), ("c", 3)):  # the volatile one, lagging, delivers all of them
        deliver(text, b"one", sequence)
    assert node.categories == ("c",) and node.gate.current.query_id == query_id
    deliver("d", b"two", 1)  # a second publisher starts its own count
    assert node.categories == ("d",)
