"""Reading and writing photos and files: :mod:`.decode`, :mod:`.encode`, :mod:`.fs` (the one atomic writer)."""
