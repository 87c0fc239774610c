"""The node's outputs over DDS: headers verbatim, input resolution, documented encodings, consistent contents,
compressed input, and lazy outputs (the overlay built, mask images and confidence computed only for subscribers)."""
import json

import cv2
import numpy as np
import pytest
import torch
from diagnostic_msgs.msg import DiagnosticStatus
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import String

from synseg_ros.image_conversion import image_to_array, to_rgb8
from synseg_ros.outputs import MASK_ON
from synseg_test_utils import LATCHED, calibrate_thresholds, counter, header, start_rig, wait_subscribed

pytestmark = pytest.mark.ros
CATEGORIES = ["cat", "dog", "tree"]
RNG = np.random.default_rng(3)
OUTPUT_ENCODINGS = {"labels": "mono8", "confidence": "32FC1", "overlay": "bgr8"}
OUTPUTS = ("segmentation", *OUTPUT_ENCODINGS)


def random_image(encoding, height, width):
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "mono16": 1, "16UC1": 1}[encoding]
    dtype = np.uint16 if encoding in ("mono16", "16UC1") else np.uint8
    shape = (height, width) if channels == 1 else (height, width, channels)
    return RNG.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True, dtype=dtype)


def check_outputs(node, outputs, hdr, rgb):
    height, width = rgb.shape[:2]
    segmentation = outputs["segmentation"]
    images = {**{name: outputs[name] for name in OUTPUT_ENCODINGS}, "segmentation.labels": segmentation.labels,
              "segmentation.confidence": segmentation.confidence,
              **{f"segmentation.masks[{k}]": m for k, m in enumerate(segmentation.masks)}}
    for name, msg in images.items():
        assert msg.header == hdr, name  # verbatim
        assert (msg.height, msg.width) == (height, width), name
    assert segmentation.header == hdr and list(segmentation.categories) == CATEGORIES
    assert len(segmentation.masks) == len(CATEGORIES) and all(m.encoding == "mono8" for m in segmentation.masks)
    for name, encoding in OUTPUT_ENCODINGS.items():
        assert outputs[name].encoding == encoding, name
    labels = image_to_array(outputs["labels"]).astype(np.int32)
    np.testing.assert_array_equal(image_to_array(segmentation.labels), labels)
    np.testing.assert_array_equal(image_to_array(segmentation.confidence), image_to_array(outputs["confidence"]))
    masks = np.stack([image_to_array(m) for m in segmentation.masks], axis=2)  # [H, W, K]
    confidence = image_to_array(outputs["confidence"])
    # The node's answer is exactly the in-process Segmenter's on the same RGB frame.
    expected = node.segmenter.segment(rgb, CATEGORIES)
    np.testing.assert_array_equal(labels, expected.labels)
    np.testing.assert_array_equal(masks, np.where(expected.masks.transpose(1, 2, 0), MASK_ON, 0))
    np.testing.assert_allclose(confidence, expected.confidence, rtol=0, atol=1e-6)
    # And the three outputs agree with each other: confidence is the winner's probability, so a winner above
    # the mask threshold is inside its own mask, and background pixels are at most the background threshold.
    inference = node.segmenter.inference
    won = labels > 0
    winner_mask = np.take_along_axis(masks, np.maximum(labels - 1, 0)[:, :, None], axis=2)[:, :, 0]
    strong = won & (confidence > inference.mask_threshold)
    assert (winner_mask[strong] == MASK_ON).all()
    assert (confidence[~won] <= inference.background_threshold).all()
    overlay = image_to_array(outputs["overlay"])
    np.testing.assert_array_equal(overlay[~won], rgb[~won][:, ::-1])
    return len(np.unique(labels)) > 1 and 0 < (masks == MASK_ON).mean() < 1


CASES = [  # encoding, height, width, row padding bytes, big endian
    ("rgb8", 48, 64, 0, False),
    ("bgr8", 37, 53, 5, False),
    ("rgba8", 64, 48, 0, False),
    ("bgra8", 30, 40, 8, False),
    ("mono8", 33, 47, 1, False),
    ("mono16", 40, 40, 0, True),
    ("16UC1", 24, 80, 6, False),
]


def test_outputs_keep_header_and_size_in_every_encoding(ros, unique_ns):
    rig = start_rig(ros, unique_ns, outputs=OUTPUTS, categories=", ".join(CATEGORIES))
    calibrate_thresholds(rig.node, CATEGORIES)
    mixed = []
    for index, (encoding, height, width, pad, big_endian) in enumerate(CASES):
        array = random_image(encoding, height, width)
        hdr = rig.send(array, encoding, index, frame_id=f"cam_{encoding}", pad=pad, big_endian=big_endian)
        outputs = {name: rig.output_of(name, hdr) for name in OUTPUTS}  # one frame at a time: no drops
        mixed.append(check_outputs(rig.node, outputs, hdr, to_rgb8(array, encoding)))
    assert sum(mixed) >= len(CASES) // 2, "labels/masks were trivial; the comparison would prove little"


def test_compressed_input_is_decoded_and_answered(ros, unique_ns):
    rig = start_rig(ros, unique_ns, outputs=OUTPUTS, categories=", ".join(CATEGORIES),
                    compressed_input=True)
    pub = ros.publisher(CompressedImage, f"{unique_ns}/image/compressed")
    wait_subscribed(pub, "image/compressed")
    calibrate_thresholds(rig.node, CATEGORIES)
    rgb = random_image("rgb8", 36, 52)
    ok, png = cv2.imencode(".png", rgb[:, :, ::-1])
    assert ok
    hdr = header(5, frame_id="compressed_cam")
    pub.publish(CompressedImage(header=hdr, format="png", data=png.tobytes()))
    outputs = {name: rig.output_of(name, hdr) for name in OUTPUTS}
    check_outputs(rig.node, outputs, hdr, rgb)


def test_overlay_is_computed_only_while_someone_subscribes(ros, unique_ns):
    rig = start_rig(ros, unique_ns, categories=", ".join(CATEGORIES))
    rgb = random_image("rgb8", 32, 32)
    for index in range(3):
        rig.output_of("labels", rig.send(rgb, "rgb8", index))
    values = rig.diagnostics_where(lambda v: counter(v, "computed_labels") == 3, "diagnostics counting 3 label maps")
    assert counter(values, "computed_overlay") == 0
    assert counter(values, "computed_segmentation") == 0 and counter(values, "computed_confidence") == 0

    rig.listen("overlay")
    assert rig.output_of("overlay", rig.send(rgb, "rgb8", 3)).encoding == "bgr8"
    rig.diagnostics_where(lambda v: counter(v, "computed_overlay") == 1, "one overlay computed")


def test_mask_images_and_confidence_are_computed_only_for_subscribed_outputs(ros, unique_ns):
    rig = start_rig(ros, unique_ns, categories=", ".join(CATEGORIES))
    segmenter, asked = rig.node.segmenter, []
    segment = segmenter.segment

    def recording(images, categories, **options):
        asked.append(options["outputs"])
        return segment(images, categories, **options)

    segmenter.segment = recording
    rgb = random_image("rgb8", 32, 32)
    result = rig.output_of("labels", rig.send(rgb, "rgb8", 0))
    assert result.encoding == "mono8"
    assert (asked[-1].labels, asked[-1].mask_images, asked[-1].confidence) == (True, False, False)
    rig.listen("confidence")
    rig.output_of("confidence", rig.send(rgb, "rgb8", 1))
    assert (asked[-1].mask_images, asked[-1].confidence) == (False, True)
    rig.listen("segmentation")
    segmentation = rig.output_of("segmentation", rig.send(rgb, "rgb8", 2))
    assert (asked[-1].mask_images, asked[-1].confidence) == (True, True)
    assert len(segmentation.masks) == len(CATEGORIES) and segmentation.confidence.encoding == "32FC1"


def test_diagnostics_report_backend_latency_and_stale_input(ros, unique_ns):
    rig = start_rig(ros, unique_ns, categories="cat, dog", stale_image_timeout_s=0.5)
    info = ros.subscribe(String, f"{unique_ns}/synseg/label_info", LATCHED)
    assert [c["name"] for c in json.loads(info.wait_for().data)["categories"]] == ["cat", "dog"]
    values = rig.diagnostics_where(lambda v: "no image received yet" in v["message"], "a no-image warning")
    assert values["backend"] == "torch" and values["precision"] == "fp32" and values["device"] == "cpu"
    assert values["categories"] == "2" and values["seconds_since_image"] == "never"

    rig.output_of("labels", rig.send(random_image("rgb8", 32, 40), "rgb8", 0))
    values = rig.diagnostics_where(lambda v: counter(v, "frames_processed") == 1, "one frame")
    for stage in ("convert", "inference", "build", "publish", "total"):
        assert float(values[f"latency_{stage}_ms"]) >= 0.0
    assert counter(values, "frames_received") == 1 and counter(values, "frames_dropped") == 0
    rig.diagnostics_where(lambda v: "no image for" in v["message"] and v["level"] == DiagnosticStatus.WARN,
                          "a stale-input warning")


def test_auto_backend_is_chosen_logged_and_reported(ros, unique_ns, tmp_path, capfd):
    # The shipped defaults (backend auto, device cuda): without a GPU this machine gets ONNX Runtime on the CPU
    # (exported on first run into cache_dir), with one PyTorch CUDA (no TensorRT / onnxruntime-gpu here).
    expected = ("torch", "cuda:0") if torch.cuda.is_available() else ("onnxruntime", "cpu")
    rig = start_rig(ros, unique_ns, categories=", ".join(CATEGORIES), backend="auto", device="cuda",
                    cache_dir=str(tmp_path))
    values = rig.diagnostics_where(lambda v: "backend" in v, "diagnostics")
    assert (values["backend"], values["device"]) == expected
    assert f"on backend {expected[0]} (fp32, {expected[1]})" in capfd.readouterr().err
    rgb = random_image("rgb8", 40, 56)
    labels = image_to_array(rig.output_of("labels", rig.send(rgb, "rgb8", 0)))
    np.testing.assert_array_equal(labels, rig.node.segmenter.segment(rgb, CATEGORIES).labels)
