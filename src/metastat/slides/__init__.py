"""Whole-slide images -> tissue masks -> tile grids at physical resolution -> tile embeddings.

Stable entry points: :func:`open_slide` (reader for thumbnails and tile crops),
:func:`load_bag` / :func:`list_bags` (feature bags for MIL) and :class:`FeatureBag`.
"""

from metastat.slides.reader import SlideReader, open_slide
from metastat.slides.store import FeatureBag, is_complete, list_bags, load_bag

__all__ = ["FeatureBag", "SlideReader", "is_complete", "list_bags", "load_bag", "open_slide"]
