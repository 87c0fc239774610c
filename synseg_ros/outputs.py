"""The node's output messages, built from a `SegmentationResult` as pure functions (testable without a node).

Every image carries the input header verbatim and has the input resolution.

- segmentation: one `synseg_msgs/Segmentation` per frame (`segmentation_message`): the label set's query id and
  category names with the labels image, one mono8 mask per category (255 = inside; masks may overlap) and the
  confidence image, so a consumer never pairs masks with the wrong names.
- labels: "mono8" (0 = background, k = k-th category, 1-based), "mono16" when there are more than 254 categories.
- confidence: "32FC1", the winning category's probability.
- overlay: "bgr8", the input blended with one colour per category where a category wins.
- label_info: JSON (`label_info_json`) with the same query id, and `vision_msgs/LabelInfo` where vision_msgs is
  installed.
"""
from __future__ import annotations

import colorsys
import functools
import importlib
import json
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from synseg_core.inference.postprocess import MASK_ON
from synseg_ros.image_conversion import array_to_image

MONO8_MAX_CATEGORIES = 254  # ids 1..254 plus background 0 fit in a byte; 255 stays free as "no label"
MAX_CATEGORIES = 512  # each category costs a decoder pass and a mask image per frame
BACKGROUND_ID = 0
_GOLDEN_RATIO = 0.618033988749895  # hue step that spreads consecutive category colours around the wheel


def labels_encoding(num_categories: int) -> str:
    """"mono8" for up to 254 categories, else "mono16"."""
    return "mono8" if num_categories <= MONO8_MAX_CATEGORIES else "mono16"


def labels_message(labels: np.ndarray, num_categories: int, header: Header) -> Image:
    """Label map [H, W] int -> mono8/mono16 Image."""
    dtype = np.uint8 if labels_encoding(num_categories) == "mono8" else np.uint16
    return array_to_image(labels.astype(dtype, copy=False), labels_encoding(num_categories), header)


def masks_messages(masks: np.ndarray, header: Header) -> list[Image]:
    """Binary masks [K, H, W] (bool, or uint8 0/255 planes as `Segmenter` returns `mask_images`) -> K mono8 Images
    in category order, values 0/255."""
    if masks.dtype == np.uint8:
        planes = masks
    else:
        planes = np.ascontiguousarray(masks).view(np.uint8) * np.uint8(MASK_ON)  # [K, H, W] 0/255
    return [array_to_image(plane, "mono8", header) for plane in planes]


def confidence_message(confidence: np.ndarray, header: Header) -> Image:
    """Winning probability [H, W] -> 32FC1 Image."""
    return array_to_image(confidence.astype(np.float32, copy=False), "32FC1", header)


@functools.lru_cache(maxsize=8)
def category_colours(num_categories: int) -> np.ndarray:
    """Distinct, stable colours: [K + 1, 3] uint8 RGB, row 0 (background) black, row k for category id k (built once
    per K; read-only)."""
    colours = np.zeros((num_categories + 1, 3), np.uint8)
    for k in range(1, num_categories + 1):
        rgb = colorsys.hsv_to_rgb((k * _GOLDEN_RATIO) % 1.0, 0.75, 1.0)
        colours[k] = np.round(np.array(rgb) * 255)
    colours.flags.writeable = False
    return colours


@functools.lru_cache(maxsize=8)
def _colour_map(num_categories: int) -> np.ndarray:
    """`category_colours` in BGR as an OpenCV colour map [256, 1, 3] for uint8 labels (K <= 255; read-only)."""
    table = np.zeros((256, 1, 3), np.uint8)
    table[:num_categories + 1, 0] = category_colours(num_categories)[:, ::-1]
    table.flags.writeable = False
    return table


def overlay_message(rgb: np.ndarray, labels: np.ndarray, num_categories: int, alpha: float,
                    header: Header) -> Image:
    """bgr8 overlay: `alpha` * category colour + (1 - alpha) * image where a category wins, the image elsewhere.

    Args:
        rgb: [H, W, 3] uint8 input image.
        labels: [H, W] int label map (0 = background).
    """
    # OpenCV on uint8 (within one grey level of a float blend) is several times faster than numpy here.
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    if labels.dtype == np.uint8:  # a colour-map look-up: several times faster than numpy's fancy indexing
        colours = cv2.applyColorMap(np.ascontiguousarray(labels), _colour_map(num_categories))
    else:
        colours = np.take(category_colours(num_categories)[:, ::-1], labels, axis=0)  # [H, W, 3] BGR per pixel
    blended = cv2.addWeighted(bgr, 1.0 - alpha, colours, alpha, 0.0)
    cv2.copyTo(bgr, (labels == 0).view(np.uint8), blended)  # background pixels keep the image
    return array_to_image(blended, "bgr8", header)


@dataclass(frozen=True)
class LabelSet:
    """What the outputs of one query mean: its id (announced by ~/label_info), names and background convention."""

    query_id: int
    categories: tuple[str, ...]
    background: bool


def label_info_json(labels: LabelSet) -> str:
    """The label list and the output conventions as a JSON document (for `~/label_info`)."""
    return json.dumps({
        "query_id": labels.query_id,
        "categories": [{"id": k, "name": name} for k, name in enumerate(labels.categories, start=1)],
        "background_id": BACKGROUND_ID if labels.background else None,
        "labels_encoding": labels_encoding(len(labels.categories)),
        "masks": "synseg_msgs/Segmentation.masks[k - 1]: mono8 mask of category id k",
        "mask_value": MASK_ON,
        "confidence_encoding": "32FC1",
    })


def segmentation_message(msg_type: Any, labels: LabelSet, header: Header, labels_image: Image,
                         masks: list[Image], confidence: Image | None) -> Any:
    """A `synseg_msgs/Segmentation` (type passed in, so this module imports without the built messages)."""
    return msg_type(header=header, query_id=labels.query_id, categories=list(labels.categories),
                    has_background=labels.background, labels=labels_image, masks=masks,
                    confidence=confidence if confidence is not None else Image(header=header))


def vision_label_info_type() -> Any | None:
    """`vision_msgs.msg.LabelInfo` where vision_msgs is installed, else None."""
    try:
        return importlib.import_module("vision_msgs.msg").LabelInfo
    except ImportError:
        return None


def vision_label_info(msg_type: Any, labels: LabelSet, threshold: float, header: Header) -> Any:
    """Fill a `vision_msgs/LabelInfo` (class_map: id -> name, threshold = mask threshold)."""
    vision_class = importlib.import_module("vision_msgs.msg").VisionClass
    names = ([("background", BACKGROUND_ID)] if labels.background else []) + [
        (name, k) for k, name in enumerate(labels.categories, start=1)]
    return msg_type(header=header, threshold=float(threshold),
                    class_map=[vision_class(class_id=k, class_name=name) for name, k in names])
