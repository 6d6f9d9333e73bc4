"""Shared views: state that the stages and the API read, each rebuilt from a topic.

The endpoint registry, the event-type catalog and the compacted views they
are built on, the dead-letter index and redrive, and the recent-events view. A view is
not a stage: nothing here moves a delivery along. Views import `engine/` and
the Kafka helpers, never a stage (`consumers/`) or the API.
"""
