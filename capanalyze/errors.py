"""The one error type the tool raises on purpose: its message is shown to the user as is."""


class CaptureError(Exception):
    """Unreadable input (not a capture, empty, unsupported). One line, no traceback; exit 2."""
