"""A camera driver in its own process: publishes COUNT bgr8 frames of WIDTH x HEIGHT with sensor-data QoS (best
effort, keep last 5) at RATE Hz on each TOPIC, once every topic has a subscriber, then prints "sent N" and exits.
Its DDS settings are its environment's (FASTDDS_DEFAULT_PROFILES_FILE or none), as a real driver's would be.

    python camera_publisher.py WIDTH HEIGHT COUNT RATE TOPIC [TOPIC ...]
"""
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

MATCH_TIMEOUT_S = 60.0


def main(width: int, height: int, count: int, rate_hz: float, topics: list[str]) -> int:
    rclpy.init()
    node = rclpy.create_node("camera_publisher")
    try:
        publishers = [node.create_publisher(Image, topic, qos_profile_sensor_data) for topic in topics]
        deadline = time.monotonic() + MATCH_TIMEOUT_S
        while any(p.get_subscription_count() == 0 for p in publishers) and time.monotonic() < deadline:
            time.sleep(0.01)
        if any(p.get_subscription_count() == 0 for p in publishers):
            print(f"no subscriber after {MATCH_TIMEOUT_S:.0f} s", flush=True)
            return 1
        time.sleep(0.5)  # discovery of the matched reader's locators settles (shared memory or UDP)
        pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8).tobytes()
        msg = Image(height=height, width=width, encoding="bgr8", step=3 * width, data=pixels)
        start = time.monotonic()
        for index in range(count):
            msg.header.stamp.sec, msg.header.stamp.nanosec = 7000 + index, 0
            for topic, publisher in zip(topics, publishers):
                msg.header.frame_id = topic
                publisher.publish(msg)
            time.sleep(max(0.0, start + (index + 1) / rate_hz - time.monotonic()))
        print(f"sent {count}", flush=True)
        return 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    width, height, count, rate = sys.argv[1:5]
    sys.exit(main(int(width), int(height), int(count), float(rate), sys.argv[5:]))
