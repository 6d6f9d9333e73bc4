"""The pure domain of hookstream: models and the functions over them.

Nothing here opens a socket or reads the environment; sessions, clocks and
registries are passed in. This is where a newcomer starts reading.
"""
