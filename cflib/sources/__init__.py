"""Source readers: raw files in, Arrow tables in the canonical schema out.

``FORMATS`` holds one format object per source variant (``formats``); the readers of
each family are ``netflix`` and ``movielens``, and ``accounting`` counts every line.
"""

from cflib.sources.formats import FORMAT_NAMES, FORMATS, SourceVariant, detect

__all__ = ["FORMATS", "FORMAT_NAMES", "SourceVariant", "detect"]
