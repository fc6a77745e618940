"""The one golden engine of the suite (:mod:`.session`, the ``golden`` fixture), the report
(``GoldenChecker``) and the ``flop_count`` fixture (:mod:`harness.count.golden`): the files and
their store (:mod:`.store`: loading, atomic writes, the update lock, obtained files), the tolerance
bands (:mod:`.bands`), the comparison and its failure table (:mod:`.compare`), the golden records
(:mod:`.records`), and the bookkeeping of a pytest run (:mod:`.session`).

See :mod:`harness.golden.store` for the two kinds of golden (layout and count) and their format.
"""

from harness.golden.bands import EXACT, Band, Bands, BandsError, load_bands
from harness.golden.compare import (
    BAND_FIELDS,
    INFO_FIELDS,
    Mismatch,
    compare_entry,
    compare_values,
    format_mismatch,
    format_table,
)
from harness.golden.store import (
    SCHEMA_VERSION,
    TEMP_SUFFIX,
    GoldenError,
    GoldenLockedError,
    GoldenStore,
    UpdateLock,
    count_path,
    dumps_golden,
    obtained_path,
    facts,
    iter_golden_files,
    layout_path,
    load_doc,
    write_atomic,
)

__all__ = [
    "EXACT", "Band", "Bands", "BandsError", "load_bands",
    "BAND_FIELDS", "INFO_FIELDS", "Mismatch", "compare_entry", "compare_values", "format_mismatch", "format_table",
    "SCHEMA_VERSION", "TEMP_SUFFIX", "GoldenError", "GoldenLockedError", "GoldenStore", "UpdateLock", "count_path", "obtained_path",
    "dumps_golden", "facts", "iter_golden_files", "layout_path", "load_doc", "write_atomic",
]
