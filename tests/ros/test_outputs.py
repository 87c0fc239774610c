"""Output message builders: encodings, mask order, headers, overlay, label info, the Segmentation message."""
import json

import numpy as np
import pytest
from std_msgs.msg import Header

from synseg_ros.image_conversion import image_to_array
from synseg_msgs.msg import Segmentation
from synseg_ros.outputs import (MASK_ON, LabelSet, category_colours, confidence_message, label_info_json,
                                labels_encoding, labels_message, masks_messages, overlay_message,
                                segmentation_message, vision_label_info_type)

RNG = np.random.default_rng(1)


def stamped(frame_id="camera", sec=7, nanosec=9):
    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = sec, nanosec
    return header


@pytest.mark.parametrize("num_categories, encoding, dtype", [(1, "mono8", np.uint8), (254, "mono8", np.uint8),
                                                             (255, "mono16", np.uint16),
                                                             (512, "mono16", np.uint16)])
def test_labels_use_mono8_up_to_254_categories(num_categories, encoding, dtype):
    labels = RNG.integers(0, num_categories + 1, size=(4, 6)).astype(np.int32)
    msg = labels_message(labels, num_categories, stamped())
    assert msg.encoding == encoding == labels_encoding(num_categories)
    out = image_to_array(msg)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, labels)
    assert msg.header.frame_id == "camera" and msg.header.stamp.nanosec == 9


@pytest.mark.parametrize("num_categories", [1, 3, 10])
def test_masks_are_one_mono8_image_per_category_in_order(num_categories):
    masks = RNG.random((num_categories, 4, 6)) > 0.5
    messages = masks_messages(masks, stamped())
    assert len(messages) == num_categories
    for k, msg in enumerate(messages):
        assert msg.encoding == "mono8" and (msg.height, msg.width) == (4, 6) and msg.header.stamp.nanosec == 9
        np.testing.assert_array_equal(image_to_array(msg), np.where(masks[k], MASK_ON, 0))


def test_segmentation_message_carries_names_ids_and_images_over_the_wire():
    from rclpy.serialization import deserialize_message, serialize_message

    header = stamped("cam", 5, 6)
    labels = RNG.integers(0, 3, size=(4, 6)).astype(np.int32)
    masks = RNG.random((2, 4, 6)) > 0.5
    confidence = RNG.random((4, 6), dtype=np.float32)
    label_set = LabelSet(7, ("person", "open door"), True)
    msg = segmentation_message(Segmentation, label_set, header, labels_message(labels, 2, header),
                               masks_messages(masks, header), confidence_message(confidence, header))
    back = deserialize_message(serialize_message(msg), Segmentation)  # the wire format, not just the object
    assert back.query_id == 7 and list(back.categories) == ["person", "open door"] and back.has_background
    assert back.header.frame_id == "cam" and (back.header.stamp.sec, back.header.stamp.nanosec) == (5, 6)
    np.testing.assert_array_equal(image_to_array(back.labels), labels)
    assert [image_to_array(m).tolist() for m in back.masks] == [np.where(m, MASK_ON, 0).tolist() for m in masks]
    np.testing.assert_array_equal(image_to_array(back.confidence), confidence)
    bare = segmentation_message(Segmentation, label_set, header, labels_message(labels, 2, header), [], None)
    assert list(bare.masks) == [] and (bare.confidence.height, bare.confidence.width) == (0, 0)


def test_confidence_is_32fc1():
    confidence = RNG.random((4, 6), dtype=np.float32)
    msg = confidence_message(confidence, stamped())
    assert msg.encoding == "32FC1"
    np.testing.assert_array_equal(image_to_array(msg), confidence)


def test_overlay_blends_winning_pixels_and_keeps_background():
    rgb = RNG.integers(0, 256, size=(2, 3, 3), dtype=np.uint8)
    labels = np.array([[0, 1, 2], [2, 0, 1]], np.int32)
    msg = overlay_message(rgb, labels, 2, 0.5, stamped())
    assert msg.encoding == "bgr8"
    bgr = image_to_array(msg)
    colours = category_colours(2)
    np.testing.assert_array_equal(bgr[0, 0], rgb[0, 0, ::-1])  # background untouched
    expected = np.rint(0.5 * rgb[0, 1, ::-1].astype(np.float32) + 0.5 * colours[1, ::-1].astype(np.float32))
    np.testing.assert_array_equal(bgr[0, 1], expected)


@pytest.mark.parametrize("k", [1, 10, 255, 300])
def test_overlay_is_the_same_for_compact_and_int32_labels(k):
    rgb = RNG.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    labels = RNG.integers(0, k + 1, size=(40, 50)).astype(np.int32)
    compact = labels.astype(np.uint8 if k <= 255 else np.uint16)
    wide = image_to_array(overlay_message(rgb, labels, k, 0.4, stamped()))
    np.testing.assert_array_equal(image_to_array(overlay_message(rgb, compact, k, 0.4, stamped())), wide)
    won = labels > 0
    blended = 0.6 * rgb[won][:, ::-1].astype(np.float32) + 0.4 * category_colours(k)[labels[won]][:, ::-1]
    assert np.abs(wide[won].astype(np.float32) - blended).max() <= 1  # OpenCV's uint8 blend: within one grey level
    np.testing.assert_array_equal(wide[~won], rgb[~won][:, ::-1])


def test_category_colours_are_distinct_with_black_background():
    colours = category_colours(20)
    assert colours.shape == (21, 3) and colours.dtype == np.uint8
    assert (colours[0] == 0).all()
    assert len({tuple(c) for c in colours}) == 21


@pytest.mark.parametrize("background", [True, False])
def test_label_info_json_lists_ids_and_conventions(background):
    info = json.loads(label_info_json(LabelSet(3, ("person", "open door"), background)))
    assert info["query_id"] == 3
    assert info["categories"] == [{"id": 1, "name": "person"}, {"id": 2, "name": "open door"}]
    assert info["background_id"] == (0 if background else None)
    assert info["labels_encoding"] == "mono8" and "masks[k - 1]" in info["masks"]
    assert info["mask_value"] == MASK_ON and info["confidence_encoding"] == "32FC1"


def test_vision_msgs_label_info_where_installed():
    msg_type = vision_label_info_type()
    if msg_type is None:
        pytest.skip("vision_msgs is not installed here (it comes from the ROS apt install on a robot)")
    from synseg_ros.outputs import vision_label_info

    msg = vision_label_info(msg_type, LabelSet(1, ("person", "chair"), True), 0.5, stamped())
    assert [(c.class_id, c.class_name) for c in msg.class_map] == [(0, "background"), (1, "person"),
                                                                   (2, "chair")]
    assert msg.threshold == pytest.approx(0.5)
