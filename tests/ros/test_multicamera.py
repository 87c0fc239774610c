"""One node, several cameras, one model, over DDS: per-camera topics and headers, batched results equal
to one frame at a time, no starvation under a flood, a bad frame isolated to its camera, stale cameras, per-camera
overrides and configure-time errors."""
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import ReliabilityPolicy
from sensor_msgs.msg import Image

from synseg_ros.image_conversion import image_to_array
from synseg_ros.outputs import MASK_ON
from synseg_ros.parameters import NodeParameters
from synseg_test_utils import (calibrate_thresholds, counter, header, make_node, stamp_of, start_camera_rigs,
                               wait_until)

pytestmark = pytest.mark.ros
CATEGORIES = ["cat", "dog", "tree"]
CAMERAS = ["front", "rear", "left"]
SIZES = {"front": (48, 64), "rear": (37, 53), "left": (64, 90)}
OUTPUTS = ("labels", "segmentation", "confidence", "overlay")
# Long enough that frames sent one after the other always meet in one batch; only paid when a camera is silent.
WINDOW_MS = 1500.0
RNG = np.random.default_rng(9)


def frames():
    return {camera: RNG.integers(0, 256, (*SIZES[camera], 3), dtype=np.uint8) for camera in CAMERAS}


def send_round(rigs, images, index):
    """Each camera publishes its frame `index`; returns {camera: header}."""
    return {camera: rigs[camera].send(images[camera], "rgb8", index) for camera in images}


def check_alone(node, outputs, rgb):
    """A camera's outputs equal running its frame alone through the node's Segmenter."""
    expected = node.segmenter.segment(rgb, CATEGORIES)
    np.testing.assert_array_equal(image_to_array(outputs["labels"]), expected.labels)
    masks = np.stack([image_to_array(m) for m in outputs["segmentation"].masks])  # [K, H, W]
    np.testing.assert_array_equal(masks, np.where(expected.masks, MASK_ON, 0))
    np.testing.assert_array_equal(image_to_array(outputs["segmentation"].labels), expected.labels)
    np.testing.assert_allclose(image_to_array(outputs["confidence"]), expected.confidence, rtol=0, atol=1e-6)
    return len(np.unique(expected.labels)) > 1


@pytest.mark.parametrize("lanes", [1, 0], ids=["one-batch", "auto-lanes"])
def test_three_cameras_get_their_own_topics_headers_sizes_and_batched_results_equal_single_frames(ros, unique_ns,
                                                                                                  lanes):
    """lanes 1: the three frames go through the model as one batch; 0 (auto, on this CPU): one concurrent call per
    frame. Either way each camera gets exactly its own frame's result."""
    rigs = start_camera_rigs(ros, unique_ns, CAMERAS, outputs=OUTPUTS, categories=", ".join(CATEGORIES),
                             batch_window_ms=WINDOW_MS, inference_lanes=lanes)
    node = rigs["front"].node
    assert node.group.lanes == (1 if lanes == 1 else len(CAMERAS))
    calibrate_thresholds(node, CATEGORIES)
    published = {name for name, _ in node.get_publisher_names_and_types_by_node(node.get_name(), unique_ns)}
    assert {f"{unique_ns}/{c}/{o}" for c in CAMERAS for o in OUTPUTS} <= published
    assert not any(name.startswith(f"{unique_ns}/synseg/{o}") for name in published for o in OUTPUTS)

    for index in range(2):  # round 0 makes every camera live; in round 1 the frames wait for each other
        before = node.group.batch_stats
        images = frames()
        headers = send_round(rigs, images, index)
        mixed = []
        for camera, rig in rigs.items():
            outputs = {name: rig.output_of(name, headers[camera]) for name in OUTPUTS}
            for name, msg in outputs.items():
                assert msg.header.frame_id == camera and stamp_of(msg) == stamp_of(headers[camera]), name
                image = msg.labels if name == "segmentation" else msg
                assert (image.height, image.width) == SIZES[camera], name
            mixed.append(check_alone(node, outputs, images[camera]))
            # Nothing of this camera's frame reached another camera's topics.
            for other in set(CAMERAS) - {camera}:
                assert all(m.header.frame_id == other for m in rigs[other].outputs["labels"].snapshot())
        assert sum(mixed) >= 2, "labels were trivial; the comparison would prove little"
    after = node.group.batch_stats
    assert (after.batches - before.batches, after.items - before.items) == (1, 3), "round 1 was not one batch"
    values = rigs["left"].diagnostics_where(lambda v: counter(v, "frames_processed") == 2, "two frames")
    assert values["level"] == DiagnosticStatus.OK and values["cameras"] == "3"
    assert values["largest_batch"] == "3" and counter(values, "frames_dropped") == 0
    assert values["inference_lanes"] == str(node.group.lanes)
    # Concurrent CPU lanes split the cores between them (never below one thread each); one batch keeps them all.
    split = node.group.intra_op_threads
    assert (split is None) == (lanes == 1)
    if split:
        assert split.per_lane == max(1, split.previous // len(CAMERAS)) == torch.get_num_threads()
    assert values["intra_op_threads"] == str(torch.get_num_threads())


def test_a_flooding_camera_starves_no_one_and_only_its_frames_are_dropped(ros, unique_ns):
    slow_frames, period_s = 5, 0.4
    # At most two frames per batch, so the scheduler has to choose: the flood is always pending.
    rigs = start_camera_rigs(ros, unique_ns, CAMERAS, categories="cat, dog", max_batch_frames=2,
                             batch_window_ms=5.0)
    small = RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    # The flood comes from another process, as from a real driver: a publisher thread in this process would hold the
    # GIL the node's inference thread needs after every torch op, and slow inference a hundredfold.
    flooder = subprocess.Popen([sys.executable, str(Path(__file__).with_name("flood_publisher.py")),
                                f"{unique_ns}/front/image"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert flooder.stdout.readline().strip() == "matched", "the flood publisher did not start"
        wait_until(lambda: rigs["front"].node.group.batch_stats.batches > 0, what="the flood to reach the node")
        slow_headers = []
        for index in range(slow_frames):
            for camera in ("rear", "left"):  # out of phase: half a period apart
                slow_headers.append((camera, rigs[camera].send(small, "rgb8", index)))
                time.sleep(period_s / 2)
    finally:
        out, _ = flooder.communicate(input="", timeout=60)  # closing stdin stops it
    assert int(out.split()[-1]) > 100, f"the flood was no flood: {out!r}"
    for camera, hdr in slow_headers:  # every slow frame was served
        rigs[camera].output_of("labels", hdr)
    front = rigs["front"].diagnostics_where(
        lambda v: counter(v, "frames_received") > 0 and
        counter(v, "frames_processed") + counter(v, "frames_dropped") == counter(v, "frames_received"),
        "the flood fully processed or dropped")
    assert counter(front, "frames_dropped") > 0 and counter(front, "frames_processed") > 0
    for camera in ("rear", "left"):
        values = rigs[camera].diagnostics_where(lambda v: counter(v, "frames_processed") == slow_frames,
                                                "every slow frame processed")
        assert counter(values, "frames_dropped") == 0 and counter(values, "frames_received") == slow_frames


def test_a_bad_frame_on_one_camera_leaves_the_others_in_the_same_batch_unaffected(ros, unique_ns):
    rigs = start_camera_rigs(ros, unique_ns, CAMERAS, outputs=("labels", "segmentation", "confidence"),
                             categories=", ".join(CATEGORIES), batch_window_ms=WINDOW_MS)
    node = rigs["front"].node
    calibrate_thresholds(node, CATEGORIES)
    for camera, hdr in send_round(rigs, frames(), 0).items():  # every camera live
        rigs[camera].output_of("labels", hdr)
    before = node.group.batch_stats
    images = frames()
    rigs["front"].image_pub.publish(Image(header=header(1, "front"), height=2, width=2, encoding="yuv422", step=4,
                                          data=bytes(8)))
    good = send_round(rigs, {c: images[c] for c in ("rear", "left")}, 1)
    for camera, hdr in good.items():
        outputs = {name: rigs[camera].output_of(name, hdr) for name in ("labels", "segmentation", "confidence")}
        check_alone(node, outputs, images[camera])
    after = node.group.batch_stats
    assert (after.batches - before.batches, after.items - before.items) == (1, 3), "not one batch of three"
    front = rigs["front"].diagnostics_where(lambda v: counter(v, "bad_frames") == 1, "the bad frame counted")
    assert front["level"] == DiagnosticStatus.ERROR and "unsupported image encoding 'yuv422'" in front["message"]
    for camera in ("rear", "left"):
        values = rigs[camera].diagnostics_where(lambda v: counter(v, "frames_processed") == 2, "two frames")
        assert values["level"] == DiagnosticStatus.OK and counter(values, "bad_frames") == 0


def test_a_failure_while_publishing_one_camera_leaves_the_others_published(ros, unique_ns, monkeypatch):
    """Outputs are built and published on the publishing thread; one camera's failure there is counted on that
    camera only, the others of the same batch publish, and the next batch is served."""
    rigs = start_camera_rigs(ros, unique_ns, CAMERAS, outputs=("labels",), categories=", ".join(CATEGORIES),
                             batch_window_ms=WINDOW_MS)
    node = rigs["front"].node
    for camera, hdr in send_round(rigs, frames(), 0).items():  # every camera live
        rigs[camera].output_of("labels", hdr)
    front = next(p for p in node.group.pipelines if p.input_topic.startswith("front"))

    def broken_publish(*args, **kwargs):
        raise RuntimeError("output builder bug")

    monkeypatch.setattr(front, "build", broken_publish)
    for camera, hdr in send_round(rigs, frames(), 1).items():
        if camera != "front":
            rigs[camera].output_of("labels", hdr)
    values = rigs["front"].diagnostics_where(lambda v: counter(v, "internal_errors") == 1, "the failure counted")
    assert "output builder bug" in values["message"]
    monkeypatch.undo()
    for camera, hdr in send_round(rigs, frames(), 2).items():  # the front camera is served again
        rigs[camera].output_of("labels", hdr)
    for camera in ("rear", "left"):
        assert counter(rigs[camera].diagnostics_where(lambda v: counter(v, "frames_processed") == 3, "3 frames"),
                       "internal_errors") == 0


def test_a_camera_that_stops_publishing_gets_a_stale_warning_and_the_others_stay_ok(ros, unique_ns):
    rigs = start_camera_rigs(ros, unique_ns, ["front", "rear"], categories="cat", stale_image_timeout_s=0.5)
    image = RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    rigs["front"].output_of("labels", rigs["front"].send(image, "rgb8", 0))
    index, deadline = 0, time.monotonic() + 60.0
    while time.monotonic() < deadline:  # rear keeps publishing, front has gone quiet
        index += 1
        rigs["rear"].output_of("labels", rigs["rear"].send(image, "rgb8", index))
        front = wait_until(lambda: rigs["front"].diagnostics_where(lambda v: True, "front diagnostics"))
        if "no image for" in front["message"]:
            break
        time.sleep(0.1)
    assert front["level"] == DiagnosticStatus.WARN and f"{unique_ns}/front/image" in front["message"]
    rear = rigs["rear"].diagnostics_where(lambda v: True, "rear diagnostics")
    assert rear["level"] == DiagnosticStatus.OK, rear["message"]


def test_per_camera_overrides_from_a_parameter_file(ros, unique_ns, tmp_path):
    params = tmp_path / "cameras.yaml"
    params.write_text("/**:\n  ros__parameters:\n    cameras: [front, rear]\n"
                      "    rear:\n      image_reliability: best_effort\n      image_depth: 3\n      max_rate_hz: 2\n")
    node = make_node(ros, unique_ns, cli_args=["--ros-args", "--params-file", str(params)])
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    front, rear = node.cameras
    assert (front.settings.image_reliability, front.settings.image_depth, front.settings.max_rate_hz) == \
        ("reliable", 5, 0.0)  # the node-wide values of the test rig
    assert (rear.settings.image_reliability, rear.settings.image_depth, rear.settings.max_rate_hz) == \
        ("best_effort", 3, 2.0)
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    reliability = {camera: node.get_subscriptions_info_by_topic(f"{unique_ns}/{camera}/image")[0].qos_profile
                   .reliability for camera in ("front", "rear")}  # (the graph does not report the depth)
    assert reliability == {"front": ReliabilityPolicy.RELIABLE, "rear": ReliabilityPolicy.BEST_EFFORT}
    # max_rate_hz overrides apply live; a bad override is refused with its full name.
    assert node.set_parameters_atomically([Parameter("rear.max_rate_hz", value=4.0)]).successful
    assert node.cameras[1].settings.max_rate_hz == 4.0
    result = node.set_parameters_atomically([Parameter("rear.max_rate_hz", value=-1.0)])
    assert not result.successful and "parameter 'rear.max_rate_hz' is -1.0; it must be >= 0" in result.reason


def test_concurrent_cpu_lanes_split_the_threads_and_cleanup_gives_them_back(ros, unique_ns):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)  # so the split is visible on any machine: two lanes -> 2 threads each
        node = make_node(ros, unique_ns, cameras=["front", "rear"], inference_lanes=0)
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.group.lanes == 2 and torch.get_num_threads() == 2
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("cameras, message", [
    (["front", "", "rear"], "parameter 'cameras' is ['front', '', 'rear']; camera name 2 is empty"),
    (["front", "rear", "front"], "camera name 'front' appears more than once"),
    (["front cam"], "camera name 'front cam' is not allowed"),
])
def test_an_empty_duplicated_or_malformed_camera_name_fails_configure_naming_it(ros, unique_ns, cameras, message,
                                                                                capfd):
    node = make_node(ros, unique_ns, cameras=cameras)
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert message in capfd.readouterr().err
    assert node.segmenter is None and node.cameras == []


def test_a_bad_override_given_at_start_fails_configure_naming_it(ros, unique_ns, capfd):
    node = make_node(ros, unique_ns, cameras=["front"], **{"front.image_depth": 0})
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert "parameter 'front.image_depth' is 0; it must be >= 1" in capfd.readouterr().err
    assert NodeParameters().cameras == []  # the default stays the single-camera node
