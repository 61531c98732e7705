"""The built-in op set, one module per family. Importing this package registers every op."""

from . import composite, elementwise, linalg, reduction, shape  # noqa: F401
