"""django_zrpc's gevent connection; the rest of what was here has moved by role.

- ``client``: ``Client``, one DEALER connection that carries many calls, on
  gevent.

The protocol is in ``django_zrpc.wire``, the sockets and their loops in
``django_zrpc.transport`` and the server in ``django_zrpc.server``.
``core`` builds on ``wire`` and ``transport`` and imports from the rest of
django_zrpc only ``context``, ``exceptions`` and ``curve`` (keys).
``tests/test_layout.py`` holds it to that.
"""
