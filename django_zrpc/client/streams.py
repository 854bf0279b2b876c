"""What streams of both clients share, free of either side's I/O.

``contrib.opentelemetry`` wraps the asyncio client's streams in one of its own;
it subclasses ``ClosingAsyncIterator`` from here, so that an integration never
reaches into one side of the client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

__all__ = ["ClosingAsyncIterator"]


class ClosingAsyncIterator(AsyncIterator[Any]):
    """An async iterator of a call that ``close()`` abandons.

    ``aclose()`` (for ``contextlib.aclosing``), ``async with`` and dropping
    it (breaking out of ``async for`` does) close it too.
    """

    def close(self) -> None:
        raise NotImplementedError

    def __aiter__(self) -> Any:
        return self

    async def aclose(self) -> None:
        """Abandon the stream (``close()``, for ``contextlib.aclosing``)."""
        self.close()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass
