"""Celery configuration of the grid, derived from the grid's settings.

A worker is an orchestrator: its pool's concurrency is its slot count, and a
`provision_node` task holds one slot for its node's whole life. The pool is
made of threads, since a task spends its life waiting on a node process.
"""

from kombu import Queue

from app import settings
from app.orchestrator import queue_for

_settings = settings.get()

broker_url = _settings.redis_url
# kombu's Redis transport, resuming within 50 ms once a busy worker's slot
# frees (see app.broker).
broker_transport = "app.broker:Transport"
broker_connection_retry_on_startup = True
# NOTE: a task runs as long as its session, and with late acks the Redis
# broker hands an unacknowledged task out again after this many seconds: 30
# days, longer than any session. Should it happen anyway (or for the task of
# a worker that was killed), the task finds its session no longer queued and
# drops it, so no session is ever started twice.
broker_transport_options = {"visibility_timeout": 30 * 24 * 3600}

task_ignore_result = True
task_serializer = "json"
accept_content = ["json"]
imports = ("app.tasks.provision",)

# A worker subscribes to the queue of each browser it offers; a manager
# sends to the queue of any browser a live worker offers.
task_queues = [Queue(queue_for(browser)) for browser in _settings.browsers]
task_create_missing_queues = True

worker_pool = "threads"
worker_concurrency = _settings.slots
# Late acks with a prefetch of one per slot: a busy worker reserves nothing
# it cannot start now, so a free worker on another host gets the request.
task_acks_late = True
worker_prefetch_multiplier = 1
worker_redirect_stdouts = False
