"""Chapter data helpers: the logic behind each chapter of the book (one module per chapter)."""


def show_bullets(lines: list[str], empty: str = "*(nothing to compare)*") -> None:
    """Display ``lines`` as a Markdown bullet list in a notebook (``empty`` when there are none)."""
    from IPython.display import Markdown, display

    display(Markdown("\n".join(f"- {line}" for line in lines) if lines else empty))
