"""One exception handler for the API: every error is a JSON body that says what is wrong.

DRF's own errors keep their shape (`{"detail": ...}` or field errors); a Django ValidationError
becomes a 400, a Conflict or NotAllowed from the services a 409, and a value PostgreSQL cannot
store (a NUL character in text or JSON) a 400. Nothing escapes as a 500 with an HTML page.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .. import services

NUL_MESSAGE = "text and JSON values must not contain NUL (\\u0000) characters"


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        return Response({"detail": "; ".join(exc.messages)}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, services.NotAllowed):
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, services.Conflict):
        return Response({"detail": "another change to this saga came first; reload and try again"},
                        status=status.HTTP_409_CONFLICT)
    if _is_nul_refusal(exc):
        return Response({"detail": NUL_MESSAGE}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DataError):
        return Response({"detail": f"the database refused a value: {exc}".strip()}, status=status.HTTP_400_BAD_REQUEST)
    return drf_exception_handler(exc, context)


def _is_nul_refusal(exc: Exception) -> bool:
    # psycopg refuses NUL in a query parameter with a ValueError; PostgreSQL refuses \u0000 in jsonb.
    text = str(exc)
    return (isinstance(exc, ValueError) and "NUL" in text) or (isinstance(exc, DataError) and "\\u0000" in text)
