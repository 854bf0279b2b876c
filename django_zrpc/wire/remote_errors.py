"""The error codec: exceptions to ERR headers on the server, back to classes in the caller.

A function's exception goes back as zerorpc's ``ERR`` event (name, message,
traceback), which every zerorpc client reads. For the exceptions below the
server also puts ``{"type": ..., ...}`` under the ``error`` key of the event's
header, and a django_zrpc client raises:

- for ``Model.DoesNotExist``: a subclass of that model's ``DoesNotExist`` when
  the model is installed in the caller too, else ``RemoteDoesNotExist``; both
  are ``ObjectDoesNotExist``. The same for ``MultipleObjectsReturned``.
- for ``PermissionDenied``: ``RemotePermissionDenied`` (a ``PermissionDenied``).
- for ``ValidationError``: ``RemoteValidationError`` (a ``ValidationError``
  with the same messages, codes and fields).
- for ``InvalidArguments`` (a call its function's contract refused): an
  ``InvalidArguments`` with the same ``errors``, each ``(path, problem)``.
- for a class registered on both sides with ``register_error``: a subclass of
  it, made from the exception's ``args``.

Each is also a ``RemoteError``, with ``name``, ``msg`` and ``traceback``; every
other exception is a plain ``RemoteError``. A class is only ever made from a
registered name, never imported from a name on the wire.
"""

from __future__ import annotations

import logging
from typing import Any

from django.apps import apps
from django.core.exceptions import (
    MultipleObjectsReturned,
    ObjectDoesNotExist,
    PermissionDenied,
    ValidationError,
)

from django_zrpc.exceptions import (
    InvalidArguments,
    RemoteDoesNotExist,
    RemoteError,
    RemoteErrorMixin,
    RemoteMultipleObjectsReturned,
    RemotePermissionDenied,
    RemoteValidationError,
)

logger = logging.getLogger("django_zrpc.client")

#: The header key of an ERR event that says which class to raise.
HEADER = "error"
#: Its type for a refusal of a call that never started (ServerBusy,
#: ServerStopping): the caller may send the call again.
NEVER_STARTED = "django_zrpc.never_started"

#: Built in: a call refused by its function's contract. Registered so that
#: both clients raise an ``InvalidArguments`` (with its ``errors``), and
#: ``expected()`` knows it for the caller's mistake, not a fault of the server.
_registry: dict[str, type[BaseException]] = {"django_zrpc.InvalidArguments": InvalidArguments}


def register_error(cls: type[BaseException], name: str | None = None) -> type[BaseException]:
    """Raise remote ``cls`` exceptions as ``cls`` in the caller; register it on both sides.

    ``name`` defaults to the class's dotted path. Usable as a decorator.
    """
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        raise TypeError(f"register_error() takes an Exception subclass, not {cls!r}.")
    key = name or f"{cls.__module__}.{cls.__qualname__}"
    known = _registry.get(key)
    if known is not None and known is not cls:
        raise ValueError(f"{key!r} is registered already, for {known!r}.")
    _registry[key] = cls
    return cls


# -- the server's side -----------------------------------------------------------


def encode(exc: BaseException) -> dict[str, Any] | None:
    """Return what the caller needs to raise ``exc`` as its class, or None for a plain error."""
    if isinstance(exc, InvalidArguments):
        # Its places are an attribute, not in args: send what rebuilds it.
        errors = [[path, problem] for path, problem in exc.errors]
        return {"type": "django_zrpc.InvalidArguments", "args": [str(exc), errors]}
    for cls in type(exc).__mro__:
        for key, registered in _registry.items():
            if registered is cls:
                return {"type": key, "args": [_sendable(arg) for arg in exc.args]}
    if isinstance(exc, ValidationError):
        return {"type": "ValidationError", **_validation_detail(exc)}
    for cls, attribute in _PER_MODEL.items():
        if isinstance(exc, cls):
            return {"type": cls.__name__, "model": _model_label(exc, attribute)}
    if isinstance(exc, PermissionDenied):
        return {"type": "PermissionDenied"}
    return None


def expected(exc: BaseException) -> bool:
    """Whether ``exc`` is an outcome the caller is meant to handle, not a fault of the server.

    A registered error, or one of Django's that a view turns into a response
    (``DoesNotExist``: a 404; ``PermissionDenied``: a 403; ``ValidationError``:
    a form's errors). ``MultipleObjectsReturned`` is a bug, and stays one.
    """
    if isinstance(exc, ObjectDoesNotExist | PermissionDenied | ValidationError):
        return True
    registered = tuple(_registry.values())
    return bool(registered) and isinstance(exc, registered)


def _sendable(value: Any) -> Any:
    from django_zrpc.wire import values

    try:
        values.pack(value, rich=True)
    except TypeError:
        return str(value)
    return value


#: The exceptions Django makes per model, and the model's attribute that holds each.
_PER_MODEL = {
    ObjectDoesNotExist: "DoesNotExist",
    MultipleObjectsReturned: "MultipleObjectsReturned",
}


def _model_label(exc: BaseException, attribute: str) -> str | None:
    for model in apps.get_models():
        if type(exc) is getattr(model, attribute, None):
            return model._meta.label
    return None


def _validation_detail(exc: ValidationError) -> dict[str, Any]:
    if hasattr(exc, "error_dict"):
        return {"fields": {field: _messages(errors) for field, errors in exc.error_dict.items()}}
    return {"messages": _messages(exc.error_list)}


def _messages(errors: list[ValidationError]) -> list[list[Any]]:
    return [[str(next(iter(error))), error.code] for error in errors]


# -- the caller's side -------------------------------------------------------------


def decode(name: str, message: Any, traceback: Any, detail: Any) -> RemoteError:
    """Return the exception to raise for an ERR event and its header's ``error`` entry."""
    remote: Any = None
    kind = detail.get("type") if isinstance(detail, dict) else None
    if kind == NEVER_STARTED:
        refused = RemoteError(name, message, traceback)
        refused.never_started = True
        # The server's pushback: seconds to wait before sending it again.
        refused.retry_after = detail.get("retry_after")
        return refused
    try:
        if kind in _registry:
            args = detail.get("args")
            cls = _subclass(_registry[kind], RemoteErrorMixin)
            remote = cls(*args) if isinstance(args, list) else cls(message)
        elif kind == "ValidationError":
            remote = RemoteValidationError(_validation_error(detail))
        elif kind in ("ObjectDoesNotExist", "MultipleObjectsReturned"):
            remote = _lookup_error(kind, detail.get("model"), message)
        elif kind == "PermissionDenied":
            remote = RemotePermissionDenied(message)
    except Exception:
        logger.warning("Cannot rebuild remote %s %r; raising RemoteError.", kind, message)
        remote = None
    if remote is None:
        return RemoteError(name, message, traceback)
    remote.set_remote(name, message, traceback)
    return remote


def _lookup_error(kind: str, label: Any, message: Any) -> RemoteErrorMixin:
    base: type[Any] = RemoteDoesNotExist
    attribute = "DoesNotExist"
    if kind == "MultipleObjectsReturned":
        base, attribute = RemoteMultipleObjectsReturned, "MultipleObjectsReturned"
    cls = base
    # A process without Django's apps (a plain script calling) cannot know
    # the model: the error is then the generic RemoteDoesNotExist.
    if isinstance(label, str) and apps.models_ready:
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError):
            model = None
        if model is not None:
            cls = _subclass(getattr(model, attribute), base)
    error = cls(message)
    error.model = label if isinstance(label, str) else None
    return error


# Made once per class: ``except`` clauses compare classes, and a class a call
# made must be the class the next call makes.
_made: dict[tuple[type, type], type] = {}


def _subclass(cls: type, remote: type) -> type:
    made = _made.get((cls, remote))
    if made is None:
        # setdefault: of two threads making the first one, both get the one kept.
        made = _made.setdefault(
            (cls, remote), type(cls.__name__, (cls, remote), {"__module__": cls.__module__})
        )
    return made


def _validation_error(detail: dict[str, Any]) -> ValidationError:
    fields = detail.get("fields")
    if isinstance(fields, dict):
        return ValidationError({str(k): _error_list(v) for k, v in fields.items()})
    return ValidationError(_error_list(detail.get("messages")))


def _error_list(items: Any) -> list[ValidationError]:
    if not isinstance(items, list):
        raise ValueError("validation messages are not a list")
    return [ValidationError(str(message), code=code) for message, code in items]
