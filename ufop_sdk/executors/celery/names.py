"""Where one ufop's requests live in Redis, and for how long: defined once, for the server and the worker."""

import attrs

KEY_TTL = 600  # seconds a claim-check key, reply list or attempt counter outlives its request
HARD_LIMIT_MARGIN = 1.0  # the hard time limit, past the soft one (the processor's timeout)
MAX_ATTEMPTS = 3  # deliveries of one request that may kill their worker before it fails with 500


@attrs.frozen
class RedisNames:
    """Where one ufop's requests live in Redis: its queue, task names and keys, for both sides.

    Scoped by UFOP_NAME, so two ufops sharing a Redis never take each other's
    requests: ``myufop`` has the queue ``ufop.myufop``, tasks
    ``ufop.myufop.<Processor>`` and keys ``ufop:myufop:...``. Without a name,
    the queue is ``ufop``.
    """

    prefix: str = "ufop"

    @classmethod
    def for_settings(cls, settings):
        return cls("ufop" if settings.name is None else f"ufop:{settings.name}")

    @property
    def queue(self):
        return self.prefix.replace(":", ".")

    def task(self, route):
        return f"{self.queue}.{route.name}"

    def input(self, reply_id):
        """A claim-checked input: the worker reads it and deletes it with the answer."""
        return f"{self.prefix}:input:{reply_id}"

    def output(self, reply_id):
        """A claim-checked answer: the server takes it."""
        return f"{self.prefix}:output:{reply_id}"

    def chunks(self, reply_id):
        """A file or streamed answer's chunks, pushed by the worker as its client takes them (streams.py)."""
        return f"{self.prefix}:chunks:{reply_id}"

    def credit(self, reply_id):
        """What the client of a streamed answer took (or its cancel), pushed by the server (streams.py)."""
        return f"{self.prefix}:credit:{reply_id}"

    def answered(self, reply_id):
        """Set while a request's answer streams, and a while after: a delivery that finds it does
        not run the request again (a long stream outlives the broker's visibility timeout)."""
        return f"{self.prefix}:answered:{reply_id}"

    def attempts(self, reply_id):
        return f"{self.prefix}:attempts:{reply_id}"

    def workers(self):
        """The set naming the workers whose heartbeats are current (celery_fleet)."""
        return f"{self.prefix}:workers"

    def worker(self, node):
        """One worker's heartbeat, which expires unless renewed."""
        return f"{self.prefix}:worker:{node}"

    def replies(self, server_id):
        """One server's reply list, which its listener drains."""
        return f"{self.prefix}:replies:{server_id}"
