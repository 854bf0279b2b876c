"""The RPC functions the benchmarks call that the test project does not serve.

Installed by ``benchmarks.settings`` only. ``get_ticket`` and ``ticket_list``
come from the test project's tickets app.
"""
