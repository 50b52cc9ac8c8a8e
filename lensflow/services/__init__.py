"""Child processes lensflow supervises, and the private services it runs in them.

:mod:`lensflow.services.process` is the one supervision layer (start, wait until ready, stop
with a signal then SIGKILL, kill, restart, log tail), built on mirakuru; the services on it
are a private mosquitto (:mod:`~lensflow.services.mosquitto`), RabbitMQ node
(:mod:`~lensflow.services.rabbitmq`) and PostgreSQL cluster
(:mod:`~lensflow.services.postgres`). The demo, the benchmarks and the tests use them; this
package imports nothing of lensflow but :mod:`lensflow.shared`.
"""
