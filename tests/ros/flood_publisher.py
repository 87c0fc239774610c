"""A camera gone wild, in its own process (as a real driver would be): publishes one small rgb8 Image on TOPIC as
fast as it can until its stdin closes, then prints how many it sent. Prints "matched" once the node subscribes
(or says that none did within 60 s, and exits).

    python flood_publisher.py TOPIC
"""
import sys
import threading
import time

import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image


def main(topic: str) -> None:
    rclpy.init()
    node = rclpy.create_node("flood_publisher")
    try:
        flood(node, topic)
    finally:
        node.destroy_node()
        rclpy.shutdown()


def flood(node, topic: str) -> None:
    publisher = node.create_publisher(Image, topic, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    pixels = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    msg = Image(height=24, width=32, encoding="rgb8", step=96, data=pixels.tobytes())
    msg.header.frame_id = "front"
    deadline = time.monotonic() + 60.0
    while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    if publisher.get_subscription_count() == 0:
        print("no subscriber after 60 s", flush=True)
        return
    print("matched", flush=True)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    sent = 0
    while not stop.is_set():
        msg.header.stamp.sec, msg.header.stamp.nanosec = 5000 + sent, 0
        publisher.publish(msg)
        sent += 1
    print(f"sent {sent}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
