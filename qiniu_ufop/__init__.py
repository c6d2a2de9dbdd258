"""qiniu-ufop's import name, so apps written for it run on ufop-sdk unchanged.

See ufop_sdk.compat, and ``ufop-sdk migrate`` to convert an app to the class style.
"""

from tornado.httputil import HTTPHeaders

from ufop_sdk.compat import QiniuUFOP, Response, Task

__all__ = ["HTTPHeaders", "QiniuUFOP", "Response", "Task"]
