"""Flask on gunicorn (sync workers): a UFOP written by hand, answering `hello` and `thumbnail/<w>x<h>`."""

from commands import answer
from flask import Flask, Response, request

app = Flask(__name__)


@app.post("/handler")
def handler():
    status, body, content_type = answer(request.args.get("cmd", ""), request.get_data())
    return Response(body, status=status, content_type=content_type)
