"""Work that outlives a page redraw.

Server side (never imports TensorFlow): `server` (asks the worker process for work, reads runs back),
`background` (threads of the server process), `collect` (web collections on such a thread).
Worker side: `worker` (the long-lived process with TensorFlow), which runs `pipeline` (one training run
from data to run folder, shared with the command line). `progress` is read and written by both.

Pages call this concern through `core.jobs.server.api`.
"""
