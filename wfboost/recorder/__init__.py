"""The recorder: a process that watches finished Argo steps and writes their results to the cache.

`watch` handles the pod and task-result events, `join` decides (without I/O) what a finished step is worth
remembering, `pending` keeps the half-seen steps, `service` runs it as `wfboost recorder`. See docs/recorder.md.
"""
