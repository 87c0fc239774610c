"""Lifecycle: failed configure is clean and retryable, deactivate/activate resumes, cleanup releases the model."""
import numpy as np
import pytest
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from sensor_msgs.msg import Image

from synseg_test_utils import header, image_message, make_node, stamp_of, start, wait_subscribed, wait_until

pytestmark = pytest.mark.ros
IMAGE = np.random.default_rng(6).integers(0, 256, size=(20, 28, 3), dtype=np.uint8)


def call(ros, srv_type, name, request):
    client = ros.helper.create_client(srv_type, name)
    try:
        assert client.wait_for_service(timeout_sec=30), f"service {name} not available"
        future = client.call_async(request)
        wait_until(future.done, what=f"a reply from {name}")
        return future.result()
    finally:
        ros.helper.destroy_client(client)


def state_of(ros, ns):
    return call(ros, GetState, f"{ns}/synseg/get_state", GetState.Request()).current_state.label


def change_state(ros, ns, transition_id):
    return call(ros, ChangeState, f"{ns}/synseg/change_state",
                ChangeState.Request(transition=Transition(id=transition_id))).success


def serve_one(ros, node, ns, index, image_pub=None):
    """Publish one frame (with `image_pub`, else a new publisher) and wait for its labels."""
    labels = ros.subscribe(Image, f"{ns}/synseg/labels")
    wait_until(lambda: node.cameras[0].subscription_count("labels") > 0, what="the node to see ~/labels")
    image_pub = image_pub or ros.publisher(Image, f"{ns}/image")
    wait_subscribed(image_pub, "image")
    image_pub.publish(image_message(IMAGE, "rgb8", header(index)))
    labels.wait_for(lambda m: stamp_of(m) == stamp_of(header(index)), f"labels of frame {index}")


def test_configure_with_a_missing_checkpoint_fails_cleanly_and_can_be_retried(ros, unique_ns, capfd):
    diagnostics = ros.subscribe(DiagnosticArray, "/diagnostics")
    node = make_node(ros, unique_ns, checkpoint="/no/such/checkpoint", categories="cat")
    assert not change_state(ros, unique_ns, Transition.TRANSITION_CONFIGURE)  # like `ros2 lifecycle set`
    assert state_of(ros, unique_ns) == "unconfigured"
    assert node.segmenter is None and node.cameras == []
    err = capfd.readouterr().err
    assert "configure failed: cannot load model '/no/such/checkpoint'" in err and "tiny-test" in err
    # The unconfigured node still reports, with the reason, on /diagnostics.
    status = wait_until(lambda: next((s for a in diagnostics.snapshot() for s in a.status
                                      if s.name.startswith(f"{unique_ns}/synseg:")
                                      and "cannot load model" in s.message), None), what="an ERROR status")
    assert status.level == DiagnosticStatus.ERROR and status.message.startswith("configure failed:")

    assert node.set_parameters([Parameter("checkpoint", value="tiny-test")])[0].successful
    assert change_state(ros, unique_ns, Transition.TRANSITION_CONFIGURE)
    assert change_state(ros, unique_ns, Transition.TRANSITION_ACTIVATE)
    assert state_of(ros, unique_ns) == "active"
    serve_one(ros, node, unique_ns, 0)


def test_invalid_parameters_fail_configure_with_every_problem_named(ros, unique_ns, capfd):
    node = make_node(ros, unique_ns, backend="trt", image_reliability="sometimes", mask_threshold=1.5)
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    err = capfd.readouterr().err
    assert "parameter.backend: 'trt' is not one of ['auto', 'torch', 'onnxruntime', 'tensorrt']" in err
    assert "parameter.image_reliability: 'sometimes' is not one of ['best_effort', 'reliable']" in err
    assert "parameter 'mask_threshold' is 1.5; it must be within [0, 1]" in err
    assert node.segmenter is None
    # At run time a bad value is refused with the reason, and the old value stays.
    result = node.set_parameters([Parameter("image_depth", value=0)])[0]
    assert not result.successful and "parameter 'image_depth' is 0; it must be >= 1" in result.reason
    result = node.set_parameters([Parameter("max_rate_hz", value="fast")])[0]
    assert not result.successful and "parameter.max_rate_hz: expected a number, got 'fast'" in result.reason
    assert node.get_parameter("image_depth").value == 5


def test_deactivate_stops_and_activate_resumes(ros, unique_ns):
    node = make_node(ros, unique_ns, categories="cat")
    start(node)
    image_pub = ros.publisher(Image, f"{unique_ns}/image")
    serve_one(ros, node, unique_ns, 0, image_pub)
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    wait_until(lambda: image_pub.get_subscription_count() == 0, what="the image subscription to close")
    for index in range(3):  # sent while nobody subscribes: not frames the node missed
        image_pub.publish(image_message(IMAGE, "rgb8", header(10 + index)))
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    serve_one(ros, node, unique_ns, 1, image_pub)
    counters = node.cameras[0].stats.snapshot().counters
    assert counters["frames_received"] == 2 and counters.get("frames_missed", 0) == 0, counters


def test_cleanup_releases_the_model_and_configure_loads_it_again(ros, unique_ns):
    node = make_node(ros, unique_ns, categories="cat")
    start(node)
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert node.segmenter is None and node.cameras == [] and node.params is None
    assert node.categories == ("cat",)  # the query survives a cleanup
    start(node)
    serve_one(ros, node, unique_ns, 2)
