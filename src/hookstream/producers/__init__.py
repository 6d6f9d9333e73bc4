"""What services import to publish events: `EventPublisher` and its sync facade."""

from hookstream.producers.publisher import EventPublisher, SyncEventPublisher

__all__ = ["EventPublisher", "SyncEventPublisher"]
