"""Model families, registered by name (see models.registry).

Importing this package imports every family module so that all names are
registered; a new family adds its import here.
"""

from models import seed  # noqa: F401  (registers seed_mlp, seed_cnn)
from models.registry import create, get, kwarg_names, names, register  # noqa: F401
