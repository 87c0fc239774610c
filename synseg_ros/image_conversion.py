"""sensor_msgs/Image <-> numpy with cv_bridge's encoding semantics, without depending on cv_bridge.

cv_bridge's numpy ABI breaks are a known pain point, so the node uses these small pure functions instead:

- `image_to_array(msg)` is cv_bridge's `imgmsg_to_cv2(msg)` (passthrough): [H, W] for one channel, [H, W, C]
  otherwise, in native byte order, row padding (`step > width * channels * bytes`) removed by striding, and the
  same "wrongly formed" checks (step too small, `height * step != len(data)`).
- `to_rgb8(array, encoding)` is `cvtColor(..., "rgb8")`: channel reordering, alpha dropped, grey replicated,
  16-bit scaled by 255/65535 and rounded. Unlike cv_bridge it also accepts the single-channel generic encodings
  `8UC1` and `16UC1` (read as mono8 / mono16), because depth and thermal cameras publish them.
- `array_to_image(array, encoding, header)` is `cv2_to_imgmsg`: dense rows, native byte order flagged.
- `compressed_to_rgb8(msg)` decodes a `sensor_msgs/CompressedImage` (JPEG, PNG, ...) with OpenCV.
"""
from __future__ import annotations

import re
import sys

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header


class ImageConversionError(ValueError):
    """An image message cannot be converted; the message names the bad value and what is allowed.

    Attributes:
        reason: the kind of problem, one of "encoding", "size", "too_large", "layout", "decode" (the node
            throttles its logs per kind).
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


# Named encodings: name -> (numpy dtype, channels). Bayer and YUV formats are not supported.
_NAMED = {
    "mono8": (np.uint8, 1), "mono16": (np.uint16, 1),
    "rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4),
    "rgb16": (np.uint16, 3), "bgr16": (np.uint16, 3), "rgba16": (np.uint16, 4), "bgra16": (np.uint16, 4),
}
# Generic OpenCV-style encodings such as "8UC3", "16UC1", "32FC1"; any channel count (the node's masks use it).
_GENERIC = re.compile(r"^(8U|8S|16U|16S|32S|32F|64F)C([1-9][0-9]*)$")
_GENERIC_DTYPES = {"8U": np.uint8, "8S": np.int8, "16U": np.uint16, "16S": np.int16, "32S": np.int32,
                   "32F": np.float32, "64F": np.float64}
# The OpenCV conversion that turns each colour layout into dense RGB (None: the image is RGB already); grey is
# replicated instead.
_TO_RGB = {"rgb": None, "bgr": cv2.COLOR_BGR2RGB, "rgba": cv2.COLOR_RGBA2RGB, "bgra": cv2.COLOR_BGRA2RGB}
_GREY_ALIASES = {"mono8", "mono16", "8UC1", "16UC1"}
RGB8_SOURCE_ENCODINGS = tuple(sorted(set(_NAMED) | _GREY_ALIASES))
_NATIVE_BIG_ENDIAN = sys.byteorder == "big"


def encoding_layout(encoding: str) -> tuple[np.dtype, int]:
    """The numpy dtype and channel count of an image encoding (e.g. "bgr8" -> (uint8, 3), "32FC1" -> (float32, 1)).

    Raises:
        ImageConversionError: the encoding is not a supported named or generic encoding.
    """
    if encoding in _NAMED:
        dtype, channels = _NAMED[encoding]
        return np.dtype(dtype), channels
    match = _GENERIC.match(encoding)
    if match:
        return np.dtype(_GENERIC_DTYPES[match.group(1)]), int(match.group(2))
    raise ImageConversionError(f"unsupported image encoding {encoding!r}; supported: {sorted(_NAMED)} and "
                               f"generic '<8U|8S|16U|16S|32S|32F|64F>C<n>' such as '8UC3' or '32FC1'", "encoding")


def image_to_array(msg: Image, max_pixels: int | None = None) -> np.ndarray:
    """View a `sensor_msgs/Image` as an array, like cv_bridge's `imgmsg_to_cv2(msg)`.

    Args:
        msg: the image message.
        max_pixels: reject images with more than this many pixels (None = no limit).

    Returns:
        [H, W] for one channel, [H, W, C] otherwise, native byte order. A read-only view of `msg.data` when
        no byte swap is needed.

    Raises:
        ImageConversionError: unknown encoding, zero or too large size, step smaller than a row, or data
            length different from `height * step`.
    """
    dtype, channels = encoding_layout(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ImageConversionError(f"image has zero size ({width}x{height}, encoding {msg.encoding!r})", "size")
    if max_pixels is not None and height * width > max_pixels:
        raise ImageConversionError(f"image {width}x{height} has {height * width} pixels; "
                                   f"at most {max_pixels} are allowed (parameter max_image_pixels)", "too_large")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(f"image is wrongly formed: step {step} < width {width} * channels {channels} "
                                   f"* bytes {dtype.itemsize} = {row_bytes} (encoding {msg.encoding!r})", "layout")
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    if buffer.size != height * step:
        raise ImageConversionError(f"image is wrongly formed: data has {buffer.size} bytes but height {height} "
                                   f"* step {step} = {height * step} (encoding {msg.encoding!r})", "layout")
    byte_order = ">" if msg.is_bigendian else "<"
    array = np.ndarray(shape=(height, width, channels), dtype=dtype.newbyteorder(byte_order), buffer=buffer,
                       strides=(step, channels * dtype.itemsize, dtype.itemsize))
    if dtype.itemsize > 1 and bool(msg.is_bigendian) != _NATIVE_BIG_ENDIAN:
        array = array.astype(dtype)  # byte swap into native order (a copy)
    else:
        array = array.view(dtype)
    return array[:, :, 0] if channels == 1 else array


def to_rgb8(array: np.ndarray, encoding: str) -> np.ndarray:
    """Convert an image array to RGB uint8, like cv_bridge's conversion to "rgb8".

    Args:
        array: [H, W] or [H, W, C] as returned by `image_to_array` for `encoding`.
        encoding: one of `RGB8_SOURCE_ENCODINGS`.

    Returns:
        [H, W, 3] uint8 RGB: `array` itself when it is RGB already (no copy: the image path reads any positive
        strides), else a new dense array.

    Raises:
        ImageConversionError: the encoding has no known colour meaning (e.g. "8UC3", "32FC1").
    """
    if encoding not in RGB8_SOURCE_ENCODINGS:
        raise ImageConversionError(f"cannot turn encoding {encoding!r} into RGB for segmentation; "
                                   f"supported: {list(RGB8_SOURCE_ENCODINGS)}", "encoding")
    if array.dtype == np.uint16:
        # cv_bridge's 16 -> 8 bit scaling; x * 255 / 65535 never falls on .5, so rounding is unambiguous.
        array = np.rint(array * (255.0 / 65535.0)).astype(np.uint8)
    if encoding in _GREY_ALIASES:
        return cv2.cvtColor(array, cv2.COLOR_GRAY2RGB)
    code = _TO_RGB[encoding.rstrip("0123456789")]
    return array if code is None else cv2.cvtColor(array, code)


def image_to_rgb8(msg: Image, max_pixels: int | None = None) -> np.ndarray:
    """`image_to_array` then `to_rgb8`: the node's input path for raw images. Returns [H, W, 3] uint8."""
    return to_rgb8(image_to_array(msg, max_pixels), msg.encoding)


def compressed_to_rgb8(msg: CompressedImage, max_pixels: int | None = None) -> np.ndarray:
    """Decode a `sensor_msgs/CompressedImage` (any format OpenCV reads) to [H, W, 3] uint8 RGB.

    Raises:
        ImageConversionError: the data is empty or cannot be decoded, or the image is larger than `max_pixels`.
    """
    data = np.frombuffer(msg.data, dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise ImageConversionError(f"cannot decode compressed image (format {msg.format!r}, {data.size} bytes); "
                                   f"expected JPEG, PNG or another format OpenCV reads", "decode")
    height, width = bgr.shape[:2]
    if max_pixels is not None and height * width > max_pixels:
        raise ImageConversionError(f"image {width}x{height} has {height * width} pixels; "
                                   f"at most {max_pixels} are allowed (parameter max_image_pixels)", "too_large")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def array_to_image(array: np.ndarray, encoding: str, header: Header) -> Image:
    """Pack an array into a `sensor_msgs/Image`, like cv_bridge's `cv2_to_imgmsg(array, encoding, header)`.

    Args:
        array: [H, W] or [H, W, C] whose dtype and channel count match `encoding`.
        encoding: e.g. "mono8", "32FC1", "8UC5".
        header: copied into the message as is (stamp and frame_id verbatim).

    Raises:
        ImageConversionError: the array's dtype or channel count does not match the encoding.
    """
    dtype, channels = encoding_layout(encoding)
    array_channels = 1 if array.ndim == 2 else array.shape[2] if array.ndim == 3 else -1
    if array.dtype != dtype or array_channels != channels:
        raise ImageConversionError(f"array of dtype {array.dtype} and shape {array.shape} does not match encoding "
                                   f"{encoding!r} ({dtype}, {channels} channel(s))", "layout")
    height, width = array.shape[:2]
    msg = Image(header=header, height=height, width=width, encoding=encoding,
                is_bigendian=_NATIVE_BIG_ENDIAN, step=width * channels * dtype.itemsize)
    msg.data = np.ascontiguousarray(array).tobytes()
    return msg
