"""Model families, registered by name (see models.registry).

Importing this package imports every family module so that all names are
registered; a new family adds its import here.
"""

# Imported for their registrations.
from models import mobilenet_v2, resnet, seed, width, xception  # noqa: F401
from models.registry import (create, default_image_shape, default_num_classes,  # noqa: F401
                             get, kwarg_names, kwarg_problem, names, normalization,
                             register)
from models.layers import POOL_IMPLS  # noqa: F401
