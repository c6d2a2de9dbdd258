"""FastAPI on uvicorn: a UFOP written by hand, answering `hello` and `thumbnail/<w>x<h>`.

The thumbnail runs inline in the endpoint: on two cores a thread pool would add a
hop and no throughput (one worker process per core already keeps both busy).
"""

from commands import answer
from fastapi import FastAPI, Request, Response

app = FastAPI()


@app.post("/handler")
async def handler(request: Request, cmd: str = ""):
    status, body, content_type = answer(cmd, await request.body())
    return Response(body, status_code=status, media_type=content_type)
