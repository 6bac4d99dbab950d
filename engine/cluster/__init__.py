"""Flow runs as tasks on a task queue (Dramatiq over Redis): a scheduler enqueues due flows, workers run them.

A task is one flow of one tenant's workspace; the state database decides who runs it (store/flow_locks.py), so the
queue may deliver a task twice (at-least-once) without a flow ever running twice at once. See docs/scale-out.md.
"""
