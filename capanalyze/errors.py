"""The one error type the tool raises on purpose: its message is shown to the user as is."""


class CaptureError(Exception):
    """Input the user can fix: an unreadable capture (not a capture, empty, unsupported)
    or an impossible option. One line, no traceback; exit 2."""
