"""constitutional-ai: Constitutional AI 2.0 end to end.

The curated public API. Implementation lives in the subpackages; importing ``cai`` never
imports torch or transformers.
"""

from cai.errors import BackendError, CaiError, InputError

__version__ = "0.1.0"

__all__ = ["BackendError", "CaiError", "InputError", "__version__"]
