"""Which busy worker may be sent a job ahead: one running a light processor's job.

A worker that answers would otherwise sleep until the server has read its
answer and sent the next job, and the server's send would wake it: under
load, light jobs then cost more in sleeps and wakes than in work. Measured
(trivial processor, 16 connections, 2 workers, 2 shared vCPUs, three
alternating rounds): CPU per request across all processes 222/217/239 µs
without sending ahead, 190/194/166 µs with; requests/s 6,858/7,203/6,002
against 7,966/7,874/9,495. Thumbnails (6 ms each) gained nothing measurable.

So a worker may hold one job besides the one it runs, and only behind a
job of a light processor (one whose last LIGHT_STREAK answers each took
under LIGHT_SECONDS in its worker) that has run for less than
RUNNING_AT_MOST so far. A job sent ahead then waits about that long, as it would have in
the queue; should the job before it hang all the same, it waits until that
job is killed at its timeout, then runs on the replacement worker. One slow answer, or a streamed one (which
holds its worker until its end), and the processor is not light until it
has answered quickly LIGHT_STREAK times again; one never seen to answer is
not light either.
"""

LIGHT_SECONDS = 0.002  # past this, the sleep and wake it saves (about 0.1 ms) are under 5% of a job
LIGHT_STREAK = 32
# Ten light jobs' time: a job running longer is not behaving as its processor does, and under load
# the server's own delay in reading answers counts in it too.
RUNNING_AT_MOST = 10 * LIGHT_SECONDS


class Pace:
    """How many answers in a row each processor has given within LIGHT_SECONDS."""

    def __init__(self):
        self.quick_in_a_row = {}

    def record(self, processor, seconds, streamed=False):
        """`processor` answered after `seconds` in its worker; `streamed`: its answer is a stream."""
        quick = not streamed and seconds < LIGHT_SECONDS
        self.quick_in_a_row[processor] = self.quick_in_a_row.get(processor, 0) + 1 if quick else 0

    def is_light(self, processor):
        return self.quick_in_a_row.get(processor, 0) >= LIGHT_STREAK
