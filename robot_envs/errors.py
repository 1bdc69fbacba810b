"""The one error type a user is meant to read.

Any layer (``robot_envs``, ``demos``, ``vision_gmps``) raises a subclass of
``UserError`` for bad input: a wrong setting, a missing or damaged file, a
checkpoint that does not fit. The message names the problem and the fix. The
``vgmps`` entry point prints it as one line (``vgmps train: error: ...``) instead
of a traceback; ``VGMPS_DEBUG=1`` shows the traceback too. It lives here, in the
bottom layer, so that ``demos`` can raise it without importing ``vision_gmps``.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input that the user can fix; ``str(err)`` says what is wrong and what to do."""
