"""Dataset readers: GAICD (dense MOS), FCDB (best crop + pairwise votes), and where the datasets live."""

from autocrop.data.fcdb import FCDBImage, RankingPair, load_fcdb
from autocrop.data.gaicd import ScoredImage, load_gaicd
from autocrop.data.locate import default_data_root, find_data_root, resolve_data_dir

__all__ = [
    "FCDBImage",
    "RankingPair",
    "ScoredImage",
    "default_data_root",
    "find_data_root",
    "load_fcdb",
    "load_gaicd",
    "resolve_data_dir",
]
