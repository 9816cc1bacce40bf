"""The ``securemsg`` command."""
