"""The reference: a bare Tornado handler writing the answer the trivial processor gives."""

import sys

import tornado.ioloop
import tornado.web


class Handler(tornado.web.RequestHandler):
    def post(self):
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.write(b"hello world")


if __name__ == "__main__":
    tornado.web.Application([(r"/handler", Handler)], log_function=lambda handler: None).listen(
        int(sys.argv[1]), "127.0.0.1")
    tornado.ioloop.IOLoop.current().start()
