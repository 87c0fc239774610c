"""Queries over DDS and parameters: latched delivery, label_info, changes, rejection of bad queries."""
import json

import numpy as np
import pytest
from rclpy.parameter import Parameter
from std_msgs.msg import String

from synseg_test_utils import LATCHED, counter, make_node, start, start_rig, wait_subscribed, wait_until

pytestmark = pytest.mark.ros
IMAGE = np.random.default_rng(4).integers(0, 256, size=(24, 32, 3), dtype=np.uint8)


def names(label_info_msg):
    return [c["name"] for c in json.loads(label_info_msg.data)["categories"]]


def mask_channels(rig, index):
    """Publish one frame and return the channel count of its masks message."""
    return int(rig.output_of("masks", rig.send(IMAGE, "rgb8", index)).encoding.removeprefix("8UC"))


def test_query_published_before_start_is_applied_and_late_subscribers_get_it(ros, unique_ns):
    query_pub = ros.publisher(String, f"{unique_ns}/query", LATCHED)
    query_pub.publish(String(data="car; bicycle\nperson, car"))  # nobody listens yet
    node = make_node(ros, unique_ns, categories="tree")  # the default query is replaced by the latched one
    start(node)
    wait_until(lambda: node.categories == ("car", "bicycle", "person"), what="the latched query to apply")
    late = ros.subscribe(String, f"{unique_ns}/synseg/label_info", LATCHED)  # subscribes after publication
    assert late.wait_for(lambda m: names(m) == ["car", "bicycle", "person"], "label_info for the query")
    info = json.loads(late.snapshot()[-1].data)
    assert info["masks_encoding"] == "8UC3" and info["background_id"] == 0


def test_new_query_changes_label_info_and_outputs(ros, unique_ns):
    rig = start_rig(ros, unique_ns, outputs=["masks"], categories="cat, dog")
    info = ros.subscribe(String, f"{unique_ns}/synseg/label_info", LATCHED)
    info.wait_for(lambda m: names(m) == ["cat", "dog"], "label_info for the default query")
    assert mask_channels(rig, 0) == 2

    query_pub = ros.publisher(String, f"{unique_ns}/query", LATCHED)
    wait_subscribed(query_pub, "the query topic")
    query_pub.publish(String(data="sky, road, car, tree"))
    info.wait_for(lambda m: names(m) == ["sky", "road", "car", "tree"], "label_info for the new query")
    assert mask_channels(rig, 1) == 4


def test_over_limit_and_empty_queries_are_rejected_and_the_old_query_stays(ros, unique_ns, capfd):
    rig = start_rig(ros, unique_ns, outputs=["masks"], categories="cat, dog", max_categories=3,
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
