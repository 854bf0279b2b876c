"""zerorpc's wire protocol (v3), pure: what travels, with no sockets and no event loop.

- ``protocol``: events, frames and the bounded unpacker (msgpack);
- ``values``: Django's values (models, querysets, dates, decimals) on the wire;
- ``remote_errors``: the error codec, a Django exception to a remote error and back;
- ``calls_out``: the caller's side of a call, from the request it sends to the
  reply it reads, shared by the gevent and the asyncio client;
- ``unreachable``: what a call that reached no server says.

Nothing here imports gevent, asyncio, pyzmq or Django's settings, so each
module can be tested with bytes in and bytes out; both clients, the server
and the commands build on it. ``tests/project/test_layout.py`` holds it to that.
"""
