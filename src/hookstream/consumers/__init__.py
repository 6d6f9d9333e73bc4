"""The stages of the flow and what they write: router, dispatcher, attempt index.

A delivery moves router → dispatcher (admit → sign → send → settle → act);
the act side writes retry tiers, dead letters, the attempt log and
operational events. Stages import `engine/`, `views/` and `egress/`; the API
imports none of them except the writers it shares (dead letters, ops events).
"""
