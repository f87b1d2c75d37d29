"""One exception handler for the API: every error is a JSON body that says what is wrong.

DRF's own errors keep their shape (`{"detail": ...}` or field errors); a Django ValidationError
becomes a 400, a Conflict or NotAllowed from the services a 409. Nothing escapes as a 500 with
an HTML page.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .. import services


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        return Response({"detail": "; ".join(exc.messages)}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, services.NotAllowed):
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, services.Conflict):
        return Response({"detail": "another change to this saga came first; reload and try again"},
                        status=status.HTTP_409_CONFLICT)
    return drf_exception_handler(exc, context)
