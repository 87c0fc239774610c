"""Fixtures for ROS tests: one rclpy context per test module on this run's DDS domain and a harness with a
spinning executor (all real rclpy over DDS, no mocks). Helpers live in synseg_test_utils.py."""
from __future__ import annotations

import itertools
import os

import pytest

# Keep DDS discovery on this machine and each pytest run on its own domain (scripts/test.sh exports one too),
# before any rclpy context exists.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 100 + 100))

import rclpy  # noqa: E402
from rclpy.context import Context  # noqa: E402

from synseg_test_utils import RosHarness  # noqa: E402

_names = itertools.count()


@pytest.fixture(scope="module")
def ros_context():
    context = Context()
    rclpy.init(context=context, domain_id=int(os.environ["ROS_DOMAIN_ID"]))
    yield context
    rclpy.shutdown(context=context)


@pytest.fixture
def ros(ros_context):
    harness = RosHarness(ros_context)
    yield harness
    harness.close()


@pytest.fixture
def unique_ns() -> str:
    """A namespace no other test uses, so topics never cross between tests."""
    return f"/t{os.getpid()}_{next(_names)}"
