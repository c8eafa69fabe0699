"""An attention explorer: click a patch, see where CL and MIM look — offline, from ``file://``.

:mod:`~clvsmim.explorer.payload` measures and encodes the attention (uint8 per row with its
scale) and sizes it against the page budget; :mod:`~clvsmim.explorer.page` writes the data
folder, the standalone page and the fragment the book embeds; :mod:`~clvsmim.explorer.build`
does both for the book's models (:func:`book_explorer`) and for ``clvsmim analyze --explorer``
(:func:`standalone_explorer`). The page itself is ``explorer.js`` + ``explorer.css``.
"""
from clvsmim.explorer.build import book_explorer, standalone_explorer
from clvsmim.explorer.page import embedded_html, read_npz, standalone_page, write_data_folder
from clvsmim.explorer.payload import (BUDGET_BYTES, Measured, decode_rows, encode_rows, images_within_budget, measure_attention,
                      page_data_bytes, profile_page_bytes)

__all__ = ["BUDGET_BYTES", "Measured", "book_explorer", "decode_rows", "embedded_html", "encode_rows",
           "images_within_budget", "measure_attention", "page_data_bytes", "profile_page_bytes", "read_npz",
           "standalone_explorer", "standalone_page", "write_data_folder"]
