"""The book: the chapter runner, chapter helpers, plots, figures and the data layer."""
