"""The contract every log backend passes. Add a backend in ``backends.py``; the suite is shared."""
