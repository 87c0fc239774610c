"""Bad input never stops the node (logged throttled, counted), and a flood never builds a backlog."""
import time

import numpy as np
import psutil
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from synseg_test_utils import counter, header, image_message, stamp_of, start_rig

pytestmark = pytest.mark.ros
RNG = np.random.default_rng(5)
GOOD = RNG.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)


def bad_images():
    """(description, message) for each kind of bad frame."""
    good = image_message(GOOD, "rgb8", header(0))
    short = image_message(GOOD, "rgb8", header(0))
    short.data = bytes(len(short.data) - 7)
    return [
        ("unknown encoding", Image(height=2, width=2, encoding="yuv422", step=4, data=bytes(8))),
        ("data shorter than step x height", short),
        ("zero size", Image(height=0, width=0, encoding="rgb8", step=0, data=b"")),
        ("huge", Image(height=good.height * 10, width=good.width * 10, encoding="rgb8",
                       step=good.step * 10, data=bytes(good.step * 10 * good.height * 10))),
    ]


def test_bad_images_are_logged_throttled_counted_and_the_next_good_frame_is_served(ros, unique_ns, capfd):
    rig = start_rig(ros, unique_ns, categories="cat, dog", max_image_pixels=GOOD.shape[0] * GOOD.shape[1] * 4)
    sent = 0
    for repeat in range(3):  # each kind three times: logged once per kind (throttle 60 s), counted every time
        for what, msg in bad_images():
            rig.image_pub.publish(msg)
            sent += 1
            rig.diagnostics_where(lambda v, n=sent: counter(v, "bad_frames") == n, f"{sent} bad frames ({what})")
    values = rig.diagnostics_where(lambda v: v["level"] == DiagnosticStatus.ERROR, "an error status")
    assert values["message"].startswith("bad image:")
    msg = rig.output_of("labels", rig.send(GOOD, "rgb8", 1))
    assert (msg.height, msg.width) == GOOD.shape[:2]
    values = rig.diagnostics_where(lambda v: counter(v, "frames_processed") == 1, "one frame")
    assert values["level"] == DiagnosticStatus.OK and counter(values, "bad_frames") == 12
    err = capfd.readouterr().err
    assert err.count("unsupported image encoding 'yuv422'") == 1
    assert err.count("image is wrongly formed: data has") == 1
    assert err.count("has zero size") == 1
    assert err.count("at most 4800 are allowed (parameter max_image_pixels)") == 1


def test_an_inference_failure_is_counted_and_the_node_keeps_serving(ros, unique_ns):
    # A backend whose fixed input size does not match the inference settings makes every inference raise; the
    # node must count it, stay up, and serve again once the setting is fixed.
    rig = start_rig(ros, unique_ns, categories="cat")
    rig.node.segmenter.backend.input_size = 32  # the tiny model then refuses the 64-pixel windows
    rig.send(GOOD, "rgb8", 0)
    values = rig.diagnostics_where(lambda v: counter(v, "inference_errors") == 1, "a failure counted")
    assert values["level"] == DiagnosticStatus.ERROR and values["message"].startswith("inference failed")
    rig.node.segmenter.backend.input_size = None
    rig.output_of("labels", rig.send(GOOD, "rgb8", 1))


def test_max_rate_hz_caps_the_processing_rate(ros, unique_ns):
    rate_hz, frames = 4.0, 12
    rig = start_rig(ros, unique_ns, categories="cat", max_rate_hz=rate_hz, image_depth=frames)
    start = time.monotonic()
    for i in range(frames):  # about 3 frames per rate period, far slower than the tiny model could serve
        rig.send(GOOD, "rgb8", i)
        time.sleep(0.5 / rate_hz)
    rig.output_of("labels", header(frames - 1))  # the newest frame is always served in the end
    values = rig.diagnostics_where(lambda v: counter(v, "frames_processed") + counter(v, "frames_dropped") == frames,
                                   "every frame processed or dropped")
    elapsed = time.monotonic() - start
    processed = counter(values, "frames_processed")
    assert 1 <= processed <= 1 + int(elapsed * rate_hz), f"{processed} frames in {elapsed:.2f} s at {rate_hz} Hz"
    assert counter(values, "frames_dropped") == frames - processed


@pytest.mark.slow
def test_flood_drops_stale_frames_without_backlog_or_memory_growth(ros, unique_ns):
    height, width, burst = 480, 640, 100
    frames = 2 * burst
    # Slow inference by settings only: the whole image resized to 896 x 896 through the tiny model. The
    # publisher lives in this process too: its history (depth = one burst) is full after the first burst,
    # so memory measured between the two bursts is the node's alone.
    rig = start_rig(ros, unique_ns, image_qos=QoSProfile(depth=burst, reliability=ReliabilityPolicy.RELIABLE),
                    categories="cat, dog", short_side=896, window=0, image_depth=burst, warmup_size=[height, width])
    rgb = RNG.integers(0, 256, size=(height, width, 3), dtype=np.uint8)

    def flood(first: int) -> dict:
        for i in range(first, first + burst):  # as fast as possible
            rig.send(rgb, "rgb8", i)
        rig.output_of("labels", header(first + burst - 1))
        return rig.diagnostics_where(lambda v: counter(v, "frames_received") == first + burst and
                                     counter(v, "frames_processed") + counter(v, "frames_dropped") == first + burst,
                                     "every frame either processed or counted as dropped")

    flood(0)
    rss_before = psutil.Process().memory_info().rss
    values = flood(burst)
    rss_growth = psutil.Process().memory_info().rss - rss_before

    processed = counter(values, "frames_processed")
    assert processed <= frames // 4, f"{processed} of {frames} frames processed: the flood was not dropped"
    assert counter(values, "frames_dropped") == frames - processed
    served = [stamp_of(m)[0] - header(0).stamp.sec for m in rig.outputs["labels"].snapshot()]
    assert served[-1] == frames - 1  # the last frame processed is the newest
    assert served == sorted(set(served)) and len(served) == processed  # in order, no repeats, no backlog
    assert rss_growth < height * width * 3 * burst // 2, f"RSS grew {rss_growth / 2**20:.0f} MiB in a burst"
