"""Import paths of earlier releases, kept; the modules themselves moved by role.

``django_zrpc.core.client.Client`` (documented for a raw connection) is now
``django_zrpc.client.gevent.connection.Client``; the protocol is in
``django_zrpc.wire``, the sockets and their loops in ``django_zrpc.transport``
and the server in ``django_zrpc.server``. This package imports nothing, so
that naming it loads no gevent.
"""
