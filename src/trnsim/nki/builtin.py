"""`nki.builtin`: present because nki-library's simulation harness imports its
simulator's `builtin` module (and installs it as `builtins.builtin`). Its contents are
not public, so this module is empty."""

__all__: list[str] = []
