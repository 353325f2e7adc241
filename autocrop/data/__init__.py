"""Dataset readers: GAICD (dense MOS), FCDB (best crop + pairwise votes), folders of unlabeled photos."""

from autocrop.data.fcdb import FCDBImage, RankingPair, load_fcdb
from autocrop.data.folder import list_images
from autocrop.data.gaicd import ScoredImage, load_gaicd
from autocrop.data.locate import resolve_data_dir

__all__ = [
    "FCDBImage",
    "RankingPair",
    "ScoredImage",
    "list_images",
    "load_fcdb",
    "load_gaicd",
    "resolve_data_dir",
]
