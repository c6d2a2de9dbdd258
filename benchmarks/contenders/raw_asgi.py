"""A raw ASGI app on uvicorn, no framework: reads the body, answers the cmd."""

from urllib.parse import parse_qs

from commands import answer


async def app(scope, receive, send):
    body, more = [], True
    while more:
        message = await receive()
        body.append(message.get("body", b""))
        more = message.get("more_body", False)
    cmd = parse_qs(scope["query_string"].decode()).get("cmd", [""])[0]
    status, content, content_type = answer(cmd, b"".join(body))
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()),
                            (b"content-length", str(len(content)).encode())]})
    await send({"type": "http.response.body", "body": content})
