"""The errors the server answers with: TGI's status codes and ``{"error", "error_type"}`` bodies."""

from __future__ import annotations

from ..runtime.errors import KinjectError


class ServeError(KinjectError):
    """A request the server refuses, with TGI's status code and error type."""

    def __init__(self, message: str, status: int = 422, error_type: str = "validation"):
        super().__init__(message)
        self.status, self.error_type = status, error_type

    def body(self) -> dict[str, str]:
        return {"error": str(self), "error_type": self.error_type}


class Overloaded(ServeError):
    """Every place in the request queue is taken (TGI's 429)."""

    def __init__(self) -> None:
        super().__init__("Model is overloaded", 429, "overloaded")
