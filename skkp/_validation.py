"""The one place that turns user input into checked arrays, with clear messages.

Every check raises ``ValueError`` or ``TypeError`` naming the argument and what
was expected, before any training starts; inputs are never modified in place.
"""
import numbers

import numpy as np
