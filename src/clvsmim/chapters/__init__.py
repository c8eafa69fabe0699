"""Chapter data helpers: the logic behind each book chapter, kept out of the notebooks so it is tested."""
