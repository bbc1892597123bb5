"""The gallery's search backends: the approximate HNSW index against exact search, kept in step with brand changes."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import modeling_logo.few_shot as few_shot
from modeling_logo import LogoGallery


def clustered_prototypes(count: int, seed: int, dim: int = 32) -> torch.Tensor:
    """Unit vectors around 40 centres, as brands of similar styles are."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, dim))
    points = centres[rng.integers(0, 40, count)] + 0.4 * rng.normal(size=(count, dim))
    return F.normalize(torch.as_tensor(points, dtype=torch.float32), dim=-1)


def ranked(results) -> list[list[str]]:
    return [[match.brand for match in row] for row in results]


def assert_same_results(approximate: LogoGallery, exact: LogoGallery, queries: torch.Tensor, top_k: int = 10):
    hnsw_results, exact_results = approximate.search(queries, top_k=top_k), exact.search(queries, top_k=top_k)
    assert ranked(hnsw_results) == ranked(exact_results)
    np.testing.assert_allclose(
        [[m.score for m in row] for row in hnsw_results], [[m.score for m in row] for row in exact_results], atol=1e-5
    )


@pytest.fixture
def twin_galleries():
    """The same 600 brands in a gallery forced onto HNSW and in an exact one, and queries near them."""
    prototypes = clustered_prototypes(600, seed=0)
    brands = {f"brand {i}": vector for i, vector in enumerate(prototypes)}
    approximate, exact = LogoGallery(search_backend="faiss-hnsw"), LogoGallery(search_backend="torch")
    for gallery in (approximate, exact):
        gallery.add_brands(brands)
    noise = torch.as_tensor(np.random.default_rng(1).normal(size=(60, 32)), dtype=torch.float32)
    queries = F.normalize(prototypes[:60] + 0.1 * noise, dim=-1)
    return approximate, exact, prototypes, queries


def test_a_small_gallery_on_hnsw_gives_the_exact_results(twin_galleries):
    approximate, exact, _, queries = twin_galleries
    assert_same_results(approximate, exact, queries)
    assert approximate.active_search_backend == "faiss-hnsw"
    assert approximate._hnsw_index.index.ntotal == 600
    # More results than the search's candidate list: efSearch is raised to top_k, so top_k brands still come back.
    few_candidates = LogoGallery(search_backend="faiss-hnsw", hnsw_ef_search=4)
    few_candidates.add_brands({brand: exact.prototype(brand) for brand in exact.brands})
    found, expected = ranked(few_candidates.search(queries, top_k=50)), ranked(exact.search(queries, top_k=50))
    assert all(len(row) == 50 and row[0] == best[0] for row, best in zip(found, expected))
    assert np.mean([len(set(row) & set(best)) / 50 for row, best in zip(found, expected)]) > 0.9


def test_removed_brands_are_never_returned_and_renames_relabel(twin_galleries):
    approximate, exact, prototypes, queries = twin_galleries
    approximate.search(queries[0])  # builds the index
    index = approximate._hnsw_index.index
    for gallery in (approximate, exact):
        gallery.remove_brand("brand 0")
        gallery.rename_brand("brand 1", "Acme")
    found = ranked(approximate.search(prototypes[:2], top_k=20))
    assert all("brand 0" not in row for row in found) and found[1][0] == "Acme"
    assert_same_results(approximate, exact, queries)
    assert approximate._hnsw_index.index is index and approximate._hnsw_index.stale == [0]  # a tombstone, no rebuild

    # A new brand under a removed brand's name: the removed vector must not come back under it.
    neighbour = exact.search(prototypes[2], top_k=2)[1]
    for gallery in (approximate, exact):
        gallery.remove_brand("brand 2")
        gallery.rename_brand(neighbour.brand, "brand 2")
    named_2 = [match.score for match in approximate.search(prototypes[2], top_k=20) if match.brand == "brand 2"]
    assert named_2 == [pytest.approx(neighbour.score, abs=1e-5)]  # the renamed neighbour, not the removed vector
    assert_same_results(approximate, exact, torch.cat([queries, prototypes[2:3]]))


def test_changed_prototypes_replace_their_old_vectors(twin_galleries):
    approximate, exact, prototypes, queries = twin_galleries
    approximate.search(queries[0])
    moved = F.normalize(0.7 * prototypes[10] + 0.3 * prototypes[20], dim=-1)
    for gallery in (approximate, exact):
        gallery.add_shot_embeddings("brand 5", prototypes[30])  # its prototype moves towards brand 30's
        gallery.add_brand_embeddings("brand 6", moved, overwrite=True)
        gallery.remove_shot("brand 7", 0)  # its only shot: the brand goes
        gallery.add_brand_embeddings("Newcomer", prototypes[40] * -1)
    assert_same_results(approximate, exact, torch.cat([queries, prototypes[30:31], moved[None], -prototypes[40:41]]))
    assert sorted(approximate._hnsw_index.stale) == [5, 6, 7]


def test_the_index_is_rebuilt_once_many_entries_are_stale(twin_galleries):
    approximate, exact, _, queries = twin_galleries
    approximate.search(queries[0])
    index = approximate._hnsw_index.index
    limit = int(few_shot.HNSW_MAX_STALE_FRACTION * 600)
    for gallery in (approximate, exact):
        for i in range(100, 100 + limit):
            gallery.remove_brand(f"brand {i}")
    assert_same_results(approximate, exact, queries)
    assert approximate._hnsw_index.index is index and len(approximate._hnsw_index.stale) == limit
    for gallery in (approximate, exact):
        gallery.remove_brand("brand 99")  # one more than the limit
    assert_same_results(approximate, exact, queries)
    rebuilt = approximate._hnsw_index
    assert rebuilt.index is not index and rebuilt.stale == [] and rebuilt.index.ntotal == len(approximate)


def test_auto_picks_the_backend_by_gallery_size(monkeypatch):
    monkeypatch.setattr(few_shot, "FAISS_MIN_BRANDS", 20)
    monkeypatch.setattr(few_shot, "HNSW_MIN_BRANDS", 50)
    prototypes = clustered_prototypes(50, seed=3)
    gallery, exact = LogoGallery(), LogoGallery(search_backend="torch")
    chosen = []
    for count in (19, 20, 49, 50):
        for target in (gallery, exact):
            target.add_brands({f"b{i}": prototypes[i] for i in range(len(target), count)})
        chosen.append(gallery.active_search_backend)
        assert_same_results(gallery, exact, prototypes[:10], top_k=5)
    assert chosen == ["torch", "faiss", "faiss", "faiss-hnsw"]
    assert gallery._hnsw_index is not None and LogoGallery(search_backend="faiss").active_search_backend == "faiss"
    with pytest.raises(ValueError, match="hnsw_ef_search must be at least 1"):
        LogoGallery(search_backend="faiss-hnsw", hnsw_ef_search=0)
