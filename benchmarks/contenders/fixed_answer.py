"""The physical limit: a bare asyncio Protocol (on uvloop) answering every request with fixed bytes.

    python fixed_answer.py PORT

It reads only the framing (headers, Content-Length, the body skipped), so what
it costs is close to what wrk and the kernel cost.
"""

import asyncio
import re
import sys

import uvloop
from commands import HELLO, TEXT

ANSWER = (f"HTTP/1.1 200 OK\r\nContent-Type: {TEXT}\r\nContent-Length: {len(HELLO)}\r\n\r\n".encode()
          + HELLO)
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


class FixedAnswer(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data):
        self.buffer += data
        answers = 0
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            length = CONTENT_LENGTH.search(self.buffer, 0, end)
            size = end + 4 + (int(length[1]) if length else 0)
            if len(self.buffer) < size:
                break
            del self.buffer[:size]
            answers += 1
        if answers:
            self.transport.write(ANSWER * answers)


async def main(port):
    server = await asyncio.get_running_loop().create_server(FixedAnswer, "127.0.0.1", port)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
