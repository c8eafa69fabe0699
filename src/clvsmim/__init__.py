"""clvsmim: what do self-supervised vision transformers learn? (CL vs MIM, ICLR 2023 companion)."""
import warnings

__version__ = "0.1.0"

# In a Jupyter kernel without ipywidgets, importing ``tqdm.auto`` (timm's hub client does) warns
# "IProgress not found" and falls back to text bars, which is what the book wants: keep the
# rendered chapters free of that warning.
warnings.filterwarnings("ignore", message="IProgress not found")
