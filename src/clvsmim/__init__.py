"""clvsmim: what do self-supervised vision transformers learn? (CL vs MIM, ICLR 2023 companion)."""

__version__ = "0.1.0"
