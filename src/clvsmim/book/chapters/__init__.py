"""Chapter data helpers: the logic behind each chapter of the book (one module per chapter), and
what they share (:mod:`clvsmim.book.chapters.common`: helpers and the naming convention of the
sentence functions). No chapter module imports another one."""
