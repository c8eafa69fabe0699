"""Analyses of "What Do Self-Supervised Vision Transformers Learn?" (definitions: BRIEF.md).

Attention (``B×H×T×T``): :func:`attention_distance`, :func:`attention_nmi`,
:func:`query_attention_map`. Tokens (``B×T×C``): :func:`relative_log_amplitude`,
:func:`token_cosine_similarity`, :func:`singular_value_spectrum`, :func:`token_tsne`,
:func:`image_cluster_score`. Layers: :func:`pooled_features`, :func:`linear_probe_per_layer`.
Everything at once over batches: :func:`analyze` runs ONE capture per batch and feeds the
collectors of :mod:`clvsmim.analysis.collectors`.
"""
from clvsmim.analysis.attention import attention_distance, attention_nmi, attention_statistics, query_attention_map
from clvsmim.analysis.collectors import FourierSums, MetricSums, PatchTokens, PooledFeatures, QueryMaps
from clvsmim.analysis.pipeline import analyze
from clvsmim.analysis.probe import collect_pooled_features, linear_probe_per_layer
from clvsmim.analysis.tokens import (cosine_silhouette, diagonal_log_amplitude, flatten_tokens, image_cluster_score,
                                     pooled_features, relative_log_amplitude, singular_value_spectrum,
                                     token_cosine_similarity, token_tsne)

__all__ = [
    "FourierSums", "MetricSums", "PatchTokens", "PooledFeatures", "QueryMaps", "analyze", "attention_distance",
    "attention_nmi", "attention_statistics", "collect_pooled_features", "cosine_silhouette",
    "diagonal_log_amplitude", "flatten_tokens", "image_cluster_score", "linear_probe_per_layer",
    "pooled_features", "query_attention_map", "relative_log_amplitude", "singular_value_spectrum",
    "token_cosine_similarity", "token_tsne",
]
