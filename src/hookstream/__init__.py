"""hookstream: an event-streaming webhook delivery engine.

Services publish domain events into Kafka; hookstream matches each event to the
endpoints customers registered, signs it the Standard Webhooks way and delivers
it at least once.
"""

__version__ = "0.1.0"
