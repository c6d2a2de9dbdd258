"""Prometheus metrics for one server process, in a registry of its own."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

STAGES = ("fetch", "queue", "process", "total")
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """Requests by processor and status, seconds by stage, requests in flight, workers."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, describe_executor):
        self.registry = CollectorRegistry()
        self._request_counters = {}
        self.requests = Counter("ufop_requests", "Requests answered, by processor and status.",
                                ["processor", "status"], registry=self.registry)
        seconds = Histogram("ufop_request_seconds", "Seconds per request stage.", ["stage"],
                            buckets=BUCKETS, registry=self.registry)
        self.stage = {stage: seconds.labels(stage) for stage in STAGES}
        self.in_flight = Gauge("ufop_requests_in_flight", "Requests being answered.",
                               registry=self.registry)
        workers = Gauge("ufop_workers", "Worker processes, by state.", ["state"], registry=self.registry)
        workers.labels("running").set_function(lambda: describe_executor().get("workers", 0))
        workers.labels("busy").set_function(lambda: describe_executor().get("busy", 0))

    def observe(self, processor, status, timings):
        key = (processor, status)
        counter = self._request_counters.get(key)
        if counter is None:
            counter = self._request_counters[key] = self.requests.labels(processor or "-", str(status))
        counter.inc()
        for stage, value in timings.items():
            self.stage[stage].observe(value)

    def render(self):
        return generate_latest(self.registry)
