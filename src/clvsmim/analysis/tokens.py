"""Token-representation metrics: Fourier Δ log amplitude, token homogeneity, singular-value
spectrum, token t-SNE and an image-clustering score.

Inputs are token features ``z`` of shape ``B×T×C``; the first ``num_prefix_tokens`` tokens
are dropped, the remaining ``N = h·w`` form a square patch grid (row-major).
"""
from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from clvsmim.analysis._shapes import antidiagonal_sums, check_tokens, compute_dtype, diagonal_dft_basis

LOG_EPS = 1e-6  # F = log(|FFT2(z)| + 1e-6), as in BRIEF.md


def diagonal_log_amplitude(z: torch.Tensor, num_prefix_tokens: int = 1) -> torch.Tensor:
    """Per-image channel-mean log amplitude on the diagonal of the shifted spectrum, ``B×K``.

    Entry ``[b, u]`` is ``mean_c log(|FFT2(z_b,c)[u, u]| + 1e-6)`` for ``u = 0 … K−1``,
    ``K = h − h//2``: after ``fftshift`` these are the entries from the centre to the corner.
    Only these ``K`` frequencies are computed: the ``N`` tokens are summed over the grid's
    ``h`` wrapped anti-diagonals (one float32 matmul, :func:`antidiagonal_sums`), then an
    ``h``-point DFT in float64. Averaging over images, then subtracting entry 0, gives
    :func:`relative_log_amplitude`.
    """
    h, w = check_tokens(z, num_prefix_tokens, "diagonal_log_amplitude")
    if h != w:  # unreachable with square_grid, kept as a guard for the diagonal
        raise ValueError(f"diagonal_log_amplitude: needs a square grid, found {h}×{w}")
    x = compute_dtype(z[:, num_prefix_tokens:])  # (B, N, C)
    sums = (antidiagonal_sums(h, x.device, x.dtype) @ x).to(torch.float64)  # (B, h, C)
    basis = diagonal_dft_basis(h, x.device)  # (2K, h)
    coeffs = basis @ sums  # (B, 2K, C)
    k = basis.shape[0] // 2
    amplitude = torch.hypot(coeffs[:, :k], coeffs[:, k:])  # (B, K, C)
    return (amplitude + LOG_EPS).log().mean(-1)


def relative_log_amplitude(z: torch.Tensor, num_prefix_tokens: int = 1) -> torch.Tensor:
    """Fourier Δ log amplitude curve, ``K = h − h//2`` values (float64).

    ``F = log(|FFT2(z)| + 1e-6)`` per image and channel of ``z`` (``B×T×C`` → ``B×C×h×w``),
    zero frequency shifted to the centre, averaged over batch and channels, read along the
    diagonal from the centre to the corner, minus the centre value. Entry 0 is 0; the last
    entry (highest frequency) is the plotted Δ log amplitude.
    """
    curve = diagonal_log_amplitude(z, num_prefix_tokens).mean(0)
    return curve - curve[0]


def token_cosine_similarity(z: torch.Tensor, num_prefix_tokens: int = 1) -> torch.Tensor:
    """Mean cosine similarity over the ``N(N−1)`` ordered pairs of distinct patch tokens, ``B``.

    Computed in ``O(N·C)`` as ``(‖Σ_i ẑ_i‖² − Σ_i ‖ẑ_i‖²) / (N(N−1))`` with ``ẑ_i = z_i / max(‖z_i‖,
    1e-12)`` the unit-normalised tokens (an all-zero token has similarity 0 with every token);
    ``Σ_i ẑ_i`` is one matrix-vector product with the inverse norms, no normalised copy.
    """
    check_tokens(z, num_prefix_tokens, "token_cosine_similarity")
    x = compute_dtype(z[:, num_prefix_tokens:])  # (B, N, C)
    n = x.shape[1]
    if n < 2:
        raise ValueError(f"token_cosine_similarity: needs at least 2 patch tokens, found N={n}")
    norms = torch.linalg.vector_norm(x, dim=-1)  # (B, N)
    inverse = 1.0 / norms.clamp_min(1e-12)  # as torch.nn.functional.normalize
    total = (inverse.unsqueeze(1) @ x).squeeze(1).square().sum(-1)  # ‖Σ ẑ_i‖², (B,)
    self_terms = (norms * inverse).square().sum(-1)  # Σ ‖ẑ_i‖², (B,)
    return (total - self_terms) / (n * (n - 1))


@contextlib.contextmanager
def single_threaded(device: torch.device):
    """Run CPU ops inside with one intra-op thread (restored afterwards; no-op off the CPU).

    LAPACK's eigensolvers on many small matrices get *slower* with several threads (10× with
    2 threads on a busy 2-core machine): the per-matrix work is too small to share.
    """
    if device.type != "cpu" or torch.get_num_threads() == 1:
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def batched_eigvalsh(matrices: torch.Tensor, workers: int = 1) -> torch.Tensor:
    """``torch.linalg.eigvalsh`` of a batch ``…×n×n`` of symmetric matrices (ascending).

    Solved on the CPU: each matrix with ONE intra-op thread, the batch split over ``workers``
    Python threads (LAPACK releases the GIL) — a small eigenproblem cannot use several cores,
    many of them side by side can. Matrices on a GPU are copied to the CPU and the values
    copied back: measured on an H100, cuSOLVER took 3.3 s for 832 float32 196×196 problems
    (ViT-S/16, 64 images × 13 depths), far slower than LAPACK on a few cores.
    """
    device = matrices.device
    flat = matrices.reshape(-1, *matrices.shape[-2:]).cpu()
    workers = max(1, min(int(workers), flat.shape[0]))
    with single_threaded(flat.device):
        if workers <= 1:
            values = torch.linalg.eigvalsh(flat)
        else:
            with ThreadPoolExecutor(workers) as pool:
                values = torch.cat(list(pool.map(torch.linalg.eigvalsh, flat.chunk(workers))))
    return values.reshape(matrices.shape[:-1]).to(device)


def singular_values(x: torch.Tensor, center: bool = True, dtype: torch.dtype = torch.float64,
                    workers: int = 1) -> torch.Tensor:
    """Singular values (descending, in ``dtype``) of each ``M×C`` matrix in ``x`` (``…×M×C``).

    Uses the eigenvalues of the smaller Gram matrix (``M×M`` or ``C×C``), several times
    faster than an SVD. In float64 they are accurate to ~1e-8 of the largest value; float32
    is ~1.6× faster on the CPU and accurate to ~1e-3 of the largest value (the square root
    of the eigenvalues' round-off: only the smallest values are affected). ``center=True``
    subtracts the mean row (token) first. ``workers``: see :func:`batched_eigvalsh`.
    Output ``…×min(M, C)``.
    """
    x = x.to(dtype)
    if center:
        x = x - x.mean(-2, keepdim=True)
    gram = x @ x.mT if x.shape[-2] <= x.shape[-1] else x.mT @ x
    return batched_eigvalsh(gram, workers).flip(-1).clamp_min(0).sqrt()


def _normalise_spectrum(values: torch.Tensor, normalize: str) -> torch.Tensor:
    """Divide descending singular values (``…×R``) by the largest (``"max"``) or their sum."""
    if normalize == "max":
        scale = values[..., :1]
    elif normalize == "sum":
        scale = values.sum(-1, keepdim=True)
    else:
        raise ValueError(f"singular_value_spectrum: normalize must be 'max' or 'sum', found {normalize!r}")
    return values / scale.clamp_min(torch.finfo(values.dtype).tiny)


def per_image_spectra(z: torch.Tensor, num_prefix_tokens: int = 1, center: bool = True,
                      normalize: str = "max", dtype: torch.dtype = torch.float64, workers: int = 1) -> torch.Tensor:
    """Normalised singular values of each image's ``N×C`` patch-token matrix, ``…×B×min(N, C)``
    (``z`` may carry leading batch dimensions, e.g. depth × image); see :func:`singular_values`."""
    check_tokens(z.reshape(-1, *z.shape[-2:]), num_prefix_tokens, "per_image_spectra")
    return _normalise_spectrum(singular_values(z[..., num_prefix_tokens:, :], center, dtype, workers), normalize)


def singular_value_spectrum(z: torch.Tensor, num_prefix_tokens: int = 1, *, per_image: bool = True,
                            center: bool = True, normalize: str = "max") -> torch.Tensor:
    """Normalised singular-value spectrum of the patch-token representations (float64).

    Default (``per_image=True``): for each image, the singular values of its centred
    ``N×C`` token matrix divided by the largest one, averaged over images → ``min(N, C)``
    values, descending, first = 1 (plot on a log scale). ``per_image=False`` stacks all
    ``B·N`` tokens into one matrix → ``min(B·N, C)`` values. ``normalize="sum"`` divides
    by the sum instead of the largest value.
    """
    check_tokens(z, num_prefix_tokens, "singular_value_spectrum")
    tokens = z[:, num_prefix_tokens:]
    if per_image:
        return per_image_spectra(z, num_prefix_tokens, center, normalize).mean(0)
    stacked = tokens.reshape(-1, tokens.shape[-1])
    return _normalise_spectrum(singular_values(stacked, center), normalize)


def flatten_tokens(z: torch.Tensor, image_ids, num_prefix_tokens: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Patch tokens as a matrix and one image id per token.

    ``z`` is ``B×T×C`` (prefix dropped; ``image_ids`` has ``B`` entries, repeated ``N`` times,
    image-major order) or already ``N_tokens×C`` (``image_ids`` has ``N_tokens`` entries,
    ``num_prefix_tokens`` ignored). Returns float64 ``N_tokens×C`` and ids ``N_tokens``.
    """
    ids = np.asarray(image_ids.cpu() if isinstance(image_ids, torch.Tensor) else image_ids).reshape(-1)
    if isinstance(z, torch.Tensor) and z.ndim == 3:
        check_tokens(z, num_prefix_tokens, "flatten_tokens")
        if len(ids) != z.shape[0]:
            raise ValueError(f"flatten_tokens: expected one image id per image ({z.shape[0]}), found {len(ids)}")
        n = z.shape[1] - num_prefix_tokens
        x = z[:, num_prefix_tokens:].reshape(-1, z.shape[-1])
        ids = np.repeat(ids, n)
    elif isinstance(z, torch.Tensor) and z.ndim == 2:
        if len(ids) != z.shape[0]:
            raise ValueError(f"flatten_tokens: expected one image id per token ({z.shape[0]}), found {len(ids)}")
        x = z
    else:
        found = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"flatten_tokens: expected tokens of shape B×T×C or N_tokens×C, found {found}")
    return x.detach().to(torch.float64).cpu().numpy(), ids


def token_tsne(z: torch.Tensor, image_ids, perplexity: float = 20, seed: int = 0,
               num_prefix_tokens: int = 1) -> np.ndarray:
    """2-D t-SNE of all patch tokens, ``N_tokens×2`` (rows ordered as :func:`flatten_tokens`).

    scikit-learn ``TSNE(init="pca", random_state=seed)``: deterministic for a given input.
    Colour the points with the class (or image id) of the image each token came from.
    """
    from sklearn.manifold import TSNE  # lazy: scikit-learn is slow to import and only the t-SNE needs it

    x, _ = flatten_tokens(z, image_ids, num_prefix_tokens)
    if not 0 < perplexity < len(x):
        raise ValueError(f"token_tsne: perplexity must be in (0, N_tokens={len(x)}), found {perplexity}")
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return tsne.fit_transform(x)


def cosine_silhouette(x, labels) -> float:
    """Mean silhouette (cosine distance) of the rows of ``x`` (``N×D``) grouped by ``labels`` (``N``):
    the mean of :func:`cosine_silhouette_samples`, equal to ``sklearn.metrics.silhouette_score(x,
    labels, metric="cosine")``."""
    return float(cosine_silhouette_samples(x, labels).mean())


def cosine_silhouette_samples(x, labels) -> np.ndarray:
    """Silhouette (cosine distance) of every row of ``x`` (``N×D``) grouped by ``labels`` (``N``).

    Equal to ``sklearn.metrics.silhouette_samples(x, labels, metric="cosine")`` but linear in
    ``N``: with unit rows ``x̂`` and group sums ``S_G = Σ_{j∈G} x̂_j``, the summed distance from
    row ``i`` to group ``G`` is ``|G| − x̂_i·S_G``, so all within-group means ``a`` (self
    excluded: ``(|G| − x̂_i·S_G − d_ii) / (|G| − 1)``, ``d_ii = 1 − |x̂_i|²``) and
    nearest-other-group means ``b`` come from one ``N×K`` product: O(N·K·D) time, O(N·K)
    memory, instead of sklearn's O(N²·D). Rows in singleton groups score 0 (as in sklearn);
    all-zero rows are kept at zero norm, as sklearn's ``normalize`` does.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"cosine_silhouette_samples: expected an N×D matrix, found shape {x.shape}")
    groups, label_index, sizes = np.unique(np.asarray(labels).reshape(-1), return_inverse=True,
                                           return_counts=True)
    n, k = len(x), len(groups)
    if len(label_index) != n:
        raise ValueError(f"cosine_silhouette_samples: expected one label per row ({n}), found {len(label_index)}")
    if not 2 <= k < n:
        raise ValueError(f"cosine_silhouette_samples: needs 2 ≤ number of groups < number of rows, found {k} groups "
                         f"for {n} rows")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    order = None if np.all(np.diff(label_index) >= 0) else np.argsort(label_index, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    sums = np.add.reduceat(unit if order is None else unit[order], starts, axis=0)  # S_G, K×D
    summed = sizes[None, :] - unit @ sums.T  # Σ_{j∈G} d(i, j), N×K
    rows = np.arange(n)
    own_size = sizes[label_index]
    self_distance = 1.0 - np.einsum("nd,nd->n", unit, unit)
    a = (summed[rows, label_index] - self_distance) / np.maximum(own_size - 1, 1)
    mean_to = summed / sizes[None, :]
    mean_to[rows, label_index] = np.inf
    b = mean_to.min(1)
    a, b = np.clip(a, 0.0, 2.0), np.clip(b, 0.0, 2.0)  # rounding; sklearn clips each distance
    denominator = np.maximum(a, b)
    s = np.divide(b - a, denominator, out=np.zeros(n), where=denominator > 0)
    s[own_size == 1] = 0.0
    return s


def image_cluster_score(z: torch.Tensor, image_ids, num_prefix_tokens: int = 1) -> float:
    """Silhouette score (cosine metric) of patch tokens grouped by their image id, in [−1, 1].

    High: tokens of one image cluster together and apart from other images (CL); near 0 or
    negative: tokens of different images intermingle (MIM). ``z``/``image_ids`` as in
    :func:`flatten_tokens`; needs at least two images. Computed in linear time by
    :func:`cosine_silhouette` (equal to scikit-learn's ``silhouette_score(metric="cosine")``).
    """
    x, ids = flatten_tokens(z, image_ids, num_prefix_tokens)
    distinct = len(np.unique(ids))
    if not 2 <= distinct < len(ids):
        raise ValueError(f"image_cluster_score: needs 2 ≤ number of images < number of tokens, "
                         f"found {distinct} images for {len(ids)} tokens")
    return cosine_silhouette(x, ids)


#: The pooling modes of :func:`pooled_features`.
POOL_MODES = ("mean", "cls", "cls_norm")
#: ``eps`` of the ``cls_norm`` LayerNorm: timm's ViT final norm (``LayerNorm(eps=1e-6)``).
CLS_NORM_EPS = 1e-6


def pooled_features(hidden_states, mode: str = "mean", num_prefix_tokens: int = 1):
    """Pool token features ``B×T×C`` to ``B×C`` with one of :data:`POOL_MODES`.

    ``"mean"``: the mean of the patch tokens (SimMIM's and BEiT's classifier input);
    ``"cls"``: token 0; ``"cls_norm"``: token 0 through a LayerNorm over the ``C`` channels
    *without* affine (``eps`` :data:`CLS_NORM_EPS`) — MoCo v3's representation, its final norm
    applied to the CLS token. No affine is needed: every probe standardises each feature channel
    over its training set (``_standardise`` in :mod:`clvsmim.evaluation.features` and
    :mod:`clvsmim.analysis.probe`), which removes any per-channel map ``γ·x + β`` up to the sign
    of ``γ``, so "LayerNorm without affine + standardisation" equals "the model's own final norm
    + standardisation" at the last depth (hidden states are block outputs, before that norm); at
    earlier depths it is the same per-token normalisation. ``"cls"`` and ``"cls_norm"`` need
    ``num_prefix_tokens ≥ 1``.

    ``hidden_states`` is one tensor or a list of them (one per depth); returns the same structure.
    """
    if isinstance(hidden_states, (list, tuple)):
        return [pooled_features(z, mode, num_prefix_tokens) for z in hidden_states]
    check_tokens(hidden_states, num_prefix_tokens, "pooled_features")
    if mode == "mean":
        return hidden_states[:, num_prefix_tokens:].mean(1)
    if mode in ("cls", "cls_norm"):
        if num_prefix_tokens < 1:
            raise ValueError(f"pooled_features: mode={mode!r} needs a prefix (CLS) token, found num_prefix_tokens=0")
        cls = hidden_states[:, 0]
        return cls if mode == "cls" else torch.nn.functional.layer_norm(cls, cls.shape[-1:], eps=CLS_NORM_EPS)
    raise ValueError(f"pooled_features: mode must be one of {', '.join(map(repr, POOL_MODES))}, found {mode!r}")
