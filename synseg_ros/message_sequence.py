"""Publication sequence numbers from rclpy's message info, per publisher: which messages are new, and how many of a
publisher's messages a subscription never took."""
from __future__ import annotations

from typing import Mapping


class PublisherSequences:
    """The newest publication sequence number taken from each publisher (by gid), for one subscription or a set of
    subscriptions to one topic. Used from the executor's thread only."""

    def __init__(self) -> None:
        self._newest: dict[bytes, int] = {}

    def advance(self, info: Mapping) -> int | None:
        """Account for a message just taken, given its message info.

        Returns:
            None when it is not newer than its publisher's newest (a duplicate, or late); else how many of that
            publisher's messages came between the two and were never taken: lost in transport, or replaced in the
            subscription's queue by newer ones (0 for the first message of a publisher, the next one, or a
            middleware without sequence numbers).
        """
        sequence = info.get("publication_sequence_number")
        if sequence is None:
            return 0
        gid = bytes((info.get("publisher_gid") or {}).get("data", b""))
        newest = self._newest.get(gid)
        if newest is not None and sequence <= newest:
            return None
        self._newest[gid] = sequence
        return 0 if newest is None else sequence - newest - 1
