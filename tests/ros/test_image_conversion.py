"""Image conversion: encodings, row padding, endianness, bad messages, compressed input, cv_bridge agreement."""
import importlib.util

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from synseg_ros.image_conversion import (ImageConversionError, RGB8_SOURCE_ENCODINGS, array_to_image,
                                         compressed_to_rgb8, encoding_layout, image_to_array, image_to_rgb8,
                                         to_rgb8)

RNG = np.random.default_rng(0)
HEIGHT, WIDTH = 5, 7


def random_array(encoding, height=HEIGHT, width=WIDTH):
    dtype, channels = encoding_layout(encoding)
    shape = (height, width) if channels == 1 else (height, width, channels)
    if dtype.kind == "f":
        return RNG.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def padded_message(array, encoding, pad, big_endian=False):
    """An Image whose rows carry `pad` junk bytes, optionally in big-endian byte order."""
    dtype = array.dtype.newbyteorder(">" if big_endian else "<")
    rows = array.astype(dtype).reshape(array.shape[0], -1).view(np.uint8)
    junk = np.full((rows.shape[0], pad), 0xAB, np.uint8)
    data = np.concatenate([rows, junk], axis=1)
    return Image(height=array.shape[0], width=array.shape[1], encoding=encoding, is_bigendian=big_endian,
                 step=data.shape[1], data=data.tobytes())


ALL_ENCODINGS = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "rgb16", "bgra16",
                 "8UC1", "8UC3", "8UC10", "8SC2", "16UC1", "16SC1", "32SC1", "32FC1", "64FC1"]


@pytest.mark.parametrize("encoding", ALL_ENCODINGS)
def test_array_to_image_round_trips_every_encoding(encoding):
    array = random_array(encoding)
    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = array_to_image(array, encoding, header)
    assert (msg.height, msg.width, msg.encoding) == (HEIGHT, WIDTH, encoding)
    assert msg.header.frame_id == "cam" and (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 345)
    assert msg.step == WIDTH * array.itemsize * (1 if array.ndim == 2 else array.shape[2])
    np.testing.assert_array_equal(image_to_array(msg), array)


@pytest.mark.parametrize("encoding", ["rgb8", "mono16", "bgra16", "32FC1", "16SC1"])
@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("pad", [0, 3, 8])
def test_row_padding_and_byte_order_are_honoured(encoding, big_endian, pad):
    array = random_array(encoding)
    out = image_to_array(padded_message(array, encoding, pad, big_endian))
    assert out.dtype == array.dtype and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_rgb8_conversions_follow_cv_bridge_semantics():
    rgb = random_array("rgb8")
    alpha = random_array("mono8")[:, :, None]
    np.testing.assert_array_equal(to_rgb8(rgb, "rgb8"), rgb)
    np.testing.assert_array_equal(to_rgb8(rgb[:, :, ::-1], "bgr8"), rgb)
    np.testing.assert_array_equal(to_rgb8(np.concatenate([rgb, alpha], 2), "rgba8"), rgb)
    np.testing.assert_array_equal(to_rgb8(np.concatenate([rgb[:, :, ::-1], alpha], 2), "bgra8"), rgb)
    grey = rgb[:, :, 0]
    for encoding in ("mono8", "8UC1"):
        np.testing.assert_array_equal(to_rgb8(grey, encoding), np.stack([grey] * 3, axis=2))


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
def test_sixteen_bit_grey_is_scaled_by_255_over_65535(encoding):
    values = np.array([[0, 128, 129, 257, 385, 386, 32896, 65535]], np.uint16)
    expected = np.array([0, 0, 1, 1, 1, 2, 128, 255], np.uint8)
    out = to_rgb8(values, encoding)
    assert out.shape == (1, 8, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, :, 0], expected)
    np.testing.assert_array_equal(out[:, :, 0], out[:, :, 2])


def test_sixteen_bit_colour_is_scaled_and_reordered():
    bgr16 = np.array([[[0, 257, 65535]]], np.uint16)
    np.testing.assert_array_equal(to_rgb8(bgr16, "bgr16"), [[[255, 1, 0]]])


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono16", "16UC1"])
def test_image_to_rgb8_handles_padded_messages(encoding):
    array = random_array(encoding)
    out = image_to_rgb8(padded_message(array, encoding, pad=5))
    np.testing.assert_array_equal(out, to_rgb8(array, encoding))


@pytest.mark.parametrize("msg, match", [
    (Image(height=2, width=2, encoding="yuv422", step=4, data=bytes(8)), "unsupported image encoding 'yuv422'"),
    (Image(height=2, width=2, encoding="", step=6, data=bytes(12)), "unsupported image encoding ''"),
    (Image(height=0, width=4, encoding="rgb8", step=12, data=b""), "zero size"),
    (Image(height=4, width=0, encoding="rgb8", step=0, data=b""), "zero size"),
    (Image(height=2, width=4, encoding="rgb8", step=12, data=bytes(23)), "data has 23 bytes but height 2"),
    (Image(height=2, width=4, encoding="rgb8", step=10, data=bytes(20)), "step 10 < width 4"),
    (Image(height=3000, width=3000, encoding="mono8", step=3000, data=bytes(4)), "9000000 pixels; at most 1000000"),
])
def test_bad_messages_raise_clear_errors(msg, match):
    with pytest.raises(ImageConversionError, match=match):
        image_to_rgb8(msg, max_pixels=1_000_000)


@pytest.mark.parametrize("encoding", ["8UC3", "32FC1", "16SC1"])
def test_encodings_without_colour_meaning_are_rejected_for_segmentation(encoding):
    msg = array_to_image(random_array(encoding), encoding, Header())
    assert image_to_array(msg).shape[:2] == (HEIGHT, WIDTH)  # readable ...
    with pytest.raises(ImageConversionError, match=f"cannot turn encoding '{encoding}' into RGB"):
        image_to_rgb8(msg)  # ... but not as a colour image


def test_array_to_image_rejects_a_mismatched_array():
    with pytest.raises(ImageConversionError, match="does not match encoding 'mono8'"):
        array_to_image(np.zeros((2, 2), np.uint16), "mono8", Header())
    with pytest.raises(ImageConversionError, match="does not match encoding '8UC4'"):
        array_to_image(np.zeros((2, 2, 3), np.uint8), "8UC4", Header())


def test_compressed_png_decodes_exactly_and_garbage_is_rejected():
    rgb = random_array("rgb8", 6, 9)
    ok, png = cv2.imencode(".png", rgb[:, :, ::-1])
    assert ok
    msg = CompressedImage(format="png", data=png.tobytes())
    np.testing.assert_array_equal(compressed_to_rgb8(msg), rgb)
    with pytest.raises(ImageConversionError, match="at most 10 are allowed"):
        compressed_to_rgb8(msg, max_pixels=10)
    with pytest.raises(ImageConversionError, match="cannot decode compressed image \\(format 'jpeg', 5 bytes\\)"):
        compressed_to_rgb8(CompressedImage(format="jpeg", data=b"\x00\x01\x02\x03\x04"))
    with pytest.raises(ImageConversionError, match="0 bytes"):
        compressed_to_rgb8(CompressedImage(format="jpeg"))


@pytest.mark.skipif(importlib.util.find_spec("cv_bridge") is None,
                    reason="cv_bridge is not installed here (it comes from the ROS apt install on a robot)")
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "rgb16", "bgra16"])
@pytest.mark.parametrize("big_endian", [False, True])
def test_agrees_with_cv_bridge(encoding, big_endian):
    from cv_bridge import CvBridge

    bridge = CvBridge()
    msg = padded_message(random_array(encoding), encoding, pad=4, big_endian=big_endian)
    np.testing.assert_array_equal(image_to_array(msg), bridge.imgmsg_to_cv2(msg))
    assert encoding in RGB8_SOURCE_ENCODINGS
    np.testing.assert_array_equal(image_to_rgb8(msg), bridge.imgmsg_to_cv2(msg, "rgb8"))
