"""Output message builders: encodings, channel order, headers, overlay, label info."""
import json

import numpy as np
import pytest
from std_msgs.msg import Header

from synseg_ros.image_conversion import image_to_array
from synseg_ros.outputs import (MASK_ON, category_colours, confidence_message, label_info_json, labels_encoding,
                                labels_message, masks_message, overlay_message, vision_label_info_type)

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


@pytest.mark.parametrize("num_categories", [1, 3, 4, 10, 128, 129, 512])
def test_masks_are_one_image_with_channel_c_for_category_c_plus_1(num_categories):
    masks = RNG.random((num_categories, 4, 6)) > 0.5
    msg = masks_message(masks, stamped())
    assert msg.encoding == f"8UC{num_categories}"
    assert (msg.height, msg.width) == (4, 6)
    out = image_to_array(msg)
    out = out[:, :, None] if out.ndim == 2 else out
    for c in range(num_categories):
        np.testing.assert_array_equal(out[:, :, c], np.where(masks[c], MASK_ON, 0))


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


def test_category_colours_are_distinct_with_black_background():
    colours = category_colours(20)
    assert colours.shape == (21, 3) and colours.dtype == np.uint8
    assert (colours[0] == 0).all()
    assert len({tuple(c) for c in colours}) == 21


@pytest.mark.parametrize("background", [True, False])
def test_label_info_json_lists_ids_and_conventions(background):
    info = json.loads(label_info_json(["person", "open door"], background))
    assert info["categories"] == [{"id": 1, "name": "person"}, {"id": 2, "name": "open door"}]
    assert info["background_id"] == (0 if background else None)
    assert info["labels_encoding"] == "mono8" and info["masks_encoding"] == "8UC2"
    assert info["mask_value"] == MASK_ON and info["confidence_encoding"] == "32FC1"


def test_vision_msgs_label_info_where_installed():
    msg_type = vision_label_info_type()
    if msg_type is None:
        pytest.skip("vision_msgs is not installed here (it comes from the ROS apt install on a robot)")
    from synseg_ros.outputs import vision_label_info

    msg = vision_label_info(msg_type, ["person", "chair"], True, 0.5, stamped())
    assert [(c.class_id, c.class_name) for c in msg.class_map] == [(0, "background"), (1, "person"),
                                                                   (2, "chair")]
    assert msg.threshold == pytest.approx(0.5)
